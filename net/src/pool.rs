//! Connections to one HTTP/1.1 server (the tap's control, a replay target), plain or TLS:
//! keep-alive connections held in a small stack of idle ones.
//!
//! Each serving thread of [`crate::server::serve_on_threads`] has its own [`Upstream`] to the
//! control (for the tap's hyper path), so a connection is opened, used and driven on one
//! thread. Checking a connection out is a short lock and a `Vec::pop` (hyper-util's
//! general-purpose pool hashes a key, builds a checkout future and wraps every connection per
//! request). A connection is given back only after its response body was read to the end, so
//! whoever takes it next can send at once.
//!
//! The tap's HTTP/1.1 relay and the replayer's client ([`crate::h1::ConnectionPool`]) keep raw
//! connections (they write the bytes themselves), opened with [`Endpoint::connect`], in the
//! same [`IdleStack`].

use crate::tls::ClientTls;
use futures_util::FutureExt;
use http::uri::{Scheme, Uri};
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One connection, ready for a request once its last response was read.
pub type Sender<B> = SendRequest<B>;

/// Idle connections kept per pool; beyond this the oldest is closed.
pub const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused (the server may be about
/// to close it, and a request sent on a closing connection fails).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A URL the pool cannot connect to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    /// The scheme is neither `http` nor `https` (or there is none).
    #[error("`{0}` is not an absolute http:// or https:// URL")]
    Scheme(String),
    /// There is no authority, or an empty host.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// An https URL whose host cannot be a TLS server name.
    #[error("`{0}`: the host is not a valid TLS server name")]
    ServerName(String),
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection failed (nothing listens, unreachable, refused).
    #[error("connect to {address}: {source}")]
    Tcp {
        /// `host:port`.
        address: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The TLS handshake failed: untrusted or wrong certificate, a refused client certificate,
    /// or a server that does not speak TLS.
    #[error("TLS handshake with {address} failed: {source}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Tls {
        /// `host:port`.
        address: String,
        /// The handshake's error.
        source: io::Error,
        /// What the failure likely means, for an operator (see [`crate::tls::hint`]).
        hint: Option<&'static str>,
    },
}

impl From<ConnectError> for io::Error {
    fn from(error: ConnectError) -> Self {
        let kind = match &error {
            ConnectError::Tcp { source, .. } | ConnectError::Tls { source, .. } => source.kind(),
        };
        io::Error::new(kind, error.to_string())
    }
}

/// Where to connect, and whether to speak TLS there (server name = the URL's host).
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`.
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.address)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

impl Endpoint {
    /// The server of an `http://` or `https://` URL (default ports 80 and 443); `tls` is used
    /// for https only.
    pub fn new(uri: &Uri, tls: &ClientTls) -> Result<Self, EndpointError> {
        let text = || uri.to_string();
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => false,
            Some(s) if *s == Scheme::HTTPS => true,
            _ => return Err(EndpointError::Scheme(text())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| EndpointError::NoHost(text()))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(EndpointError::NoHost(text()));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = format!("{host}:{port}");
        let tls = if https {
            // `[::1]` in a URL, `::1` as a name.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_string())
                .map_err(|_| EndpointError::ServerName(text()))?;
            Some((TlsConnector::from(tls.config()), name))
        } else {
            None
        };
        Ok(Self { address, tls })
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether connections speak TLS (an https URL).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection (TCP with no delay, then the TLS handshake for https).
    pub async fn connect(&self) -> Result<Stream, ConnectError> {
        let tcp_error = |source| ConnectError::Tcp {
            address: self.address.clone(),
            source,
        };
        let stream = TcpStream::connect(self.address.as_str())
            .await
            .map_err(tcp_error)?;
        stream.set_nodelay(true).map_err(tcp_error)?;
        let Some((connector, name)) = &self.tls else {
            return Ok(Stream::Plain(stream));
        };
        match connector.connect(name.clone(), stream).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls))),
            Err(source) => Err(ConnectError::Tls {
                address: self.address.clone(),
                hint: crate::tls::hint(&source),
                source,
            }),
        }
    }
}

/// A connection to a server: TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (http).
    Plain(TcpStream),
    /// TLS over TCP (https); boxed, the TLS state is large.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether an idle connection can still carry a request. One is readable only when the
    /// server closed it (or sent bytes nobody asked for); either way it cannot be reused. Costs
    /// no system call while nothing arrived on a plain connection.
    pub fn still_open(&mut self) -> bool {
        match self {
            Self::Plain(stream) => {
                let mut byte = [0u8; 1];
                matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            // Only decrypted data counts: a session ticket arriving while idle is no answer.
            Self::Tls(stream) => {
                let mut byte = [0u8; 1];
                stream.read(&mut byte).now_or_never().is_none()
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a request through an [`Upstream`] failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened; the request never left.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The HTTP exchange failed on an open connection.
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl UpstreamError {
    /// The request's own body failed while it was being sent (for the tap: the client's body
    /// broke off or was malformed), not the server: hyper reports the body's error as the
    /// cause of a "user body" error.
    pub fn is_request_body(&self) -> bool {
        match self {
            Self::Http(error) => {
                error.is_user()
                    && std::error::Error::source(error)
                        .is_some_and(|cause| cause.downcast_ref::<hyper::Error>().is_some())
            }
            Self::Connect(_) => false,
        }
    }

    /// No connection could be opened (nothing listens, unreachable, refused, TLS handshake
    /// failed): the request never left.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// Idle kept-alive connections, the most recently used on top (warm in the server's caches
/// too), at most [`MAX_IDLE`] of them (beyond, the oldest is closed), none older than
/// [`IDLE_TIMEOUT`]. Checking one out is a short lock and a `Vec::pop`. Every pool of this
/// crate and the tap's relay keeps its connections in one.
pub struct IdleStack<T> {
    idle: Mutex<Vec<(T, Instant)>>,
}

impl<T> std::fmt::Debug for IdleStack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        f.debug_struct("IdleStack").field("idle", &idle).finish()
    }
}

impl<T> Default for IdleStack<T> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<T> IdleStack<T> {
    /// The most recently used connection younger than [`IDLE_TIMEOUT`] that `usable` accepts
    /// (e.g. one the server has not closed); those passed over are dropped, so closed.
    pub fn take(&self, mut usable: impl FnMut(&mut T) -> bool) -> Option<T> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((mut connection, since)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT && usable(&mut connection) {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps a connection whose last response was read completely.
    pub fn put(&self, connection: T) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
            idle.push((connection, Instant::now()));
        }
    }
}

/// The keep-alive connections to one [`Endpoint`], for requests with bodies of type `B`.
pub struct Upstream<B> {
    endpoint: Endpoint,
    idle: IdleStack<Sender<B>>,
}

impl<B> std::fmt::Debug for Upstream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<B> Upstream<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A pool with no connection yet; they are opened as requests need them.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            idle: IdleStack::default(),
        }
    }

    /// The server this pool connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `request` (origin-form URI) on an idle connection, or on a new one. Returns the
    /// response and its connection, which the caller gives back with [`Upstream::give_back`]
    /// once the response body has been read to the end.
    ///
    /// A reused connection that turns out closed (the server dropped it while idle) is
    /// skipped, and the request, not yet sent, goes on the next; a fresh connection's error
    /// is returned.
    pub async fn send(
        &self,
        mut request: Request<B>,
    ) -> Result<(Response<Incoming>, Sender<B>), UpstreamError> {
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                // Boxed: connecting is rare, and its large state would otherwise be part of
                // (and moved with) every request's future.
                None => (Box::pin(self.connect()).await?, false),
            };
            if let Err(error) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(error.into());
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(failed.into_error().into()),
                },
            }
        }
    }

    /// Keeps a connection whose last response was read completely.
    pub fn give_back(&self, sender: Sender<B>) {
        if !sender.is_closed() {
            self.idle.put(sender);
        }
    }

    /// The most recently used open connection.
    fn take_idle(&self) -> Option<Sender<B>> {
        self.idle.take(|sender| !sender.is_closed())
    }

    async fn connect(&self) -> Result<Sender<B>, UpstreamError> {
        let stream = self.endpoint.connect().await?;
        let (sender, connection) = Builder::new().handshake(TokioIo::new(stream)).await?;
        // Driven on the calling runtime (a serving thread's own, for the tap); it ends when the
        // server or the last sender closes it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Upstream connection ended with an error.");
            }
        });
        Ok(sender)
    }
}
