//! The tap's connections to the control: HTTP/1.1 keep-alive connections held per serving
//! thread in a small stack of idle ones.
//!
//! Each serving thread of [`crate::server::serve_on_threads`] has its own [`Upstream`], so a
//! connection is opened, used and driven on one thread and checking one out is an uncontended
//! lock and a `Vec::pop` (hyper-util's general-purpose pool hashes a key, builds a checkout
//! future and wraps every connection per request). A connection is given back only after its
//! response body was read to the end, so whoever takes it next can send at once.

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tee::TeeBody;

/// The body the tap sends to the control: the client's streamed body, or none.
pub(crate) type UpstreamBody = Either<TeeBody<Incoming>, http_body_util::Empty<Bytes>>;
pub(crate) type Sender = SendRequest<UpstreamBody>;

/// Idle connections kept per thread; beyond this the oldest is closed.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused (the control may be about
/// to close it, and a request sent on a closing connection fails).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

pub(crate) struct Upstream {
    /// `host:port` of the control.
    address: String,
    idle: Mutex<Vec<(Sender, Instant)>>,
}

impl Upstream {
    pub(crate) fn new(authority: &Authority) -> Self {
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Self {
            address,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` (origin-form URI) on an idle connection, or on a new one. Returns the
    /// response and its connection, which the caller gives back with [`Upstream::give_back`]
    /// once the response body has been read to the end.
    ///
    /// A reused connection that turns out closed (the control dropped it while idle) is
    /// skipped, and the request, not yet sent, goes on the next; a fresh connection's error
    /// is returned.
    pub(crate) async fn send(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Sender), UpstreamError> {
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
    pub(crate) fn give_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
            idle.push((sender, Instant::now()));
        }
    }

    /// The most recently used open connection (warm in the control's caches too).
    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let connect_error = |source| UpstreamError::Connect {
            authority: self.address.clone(),
            source,
        };
        let stream = tokio::net::TcpStream::connect(self.address.as_str())
            .await
            .map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let (sender, connection) = Builder::new().handshake(TokioIo::new(stream)).await?;
        // Driven on this thread's runtime; it ends when the control or the last sender closes it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "Connection to the control ended with an error.");
            }
        });
        Ok(sender)
    }
}
