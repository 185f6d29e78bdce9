//! Connections to one HTTP/1.1 server (the tap's control, a replay target): keep-alive
//! connections held in a small stack of idle ones.
//!
//! Each serving thread of [`crate::server::serve_on_threads`] has its own [`Upstream`] to the
//! control, so a connection is opened, used and driven on one thread; the replayer keeps one
//! per target. Checking a connection out is a short lock and a `Vec::pop` (hyper-util's
//! general-purpose pool hashes a key, builds a checkout future and wraps every connection per
//! request). A connection is given back only after its response body was read to the end, so
//! whoever takes it next can send at once.

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One connection, ready for a request once its last response was read.
pub type Sender<B> = SendRequest<B>;

/// Idle connections kept per `Upstream`; beyond this the oldest is closed.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused (the server may be about
/// to close it, and a request sent on a closing connection fails).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

impl UpstreamError {
    /// The TCP connection could not be opened (nothing listens, unreachable, refused).
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

pub struct Upstream<B> {
    /// `host:port` of the server.
    address: String,
    idle: Mutex<Vec<(Sender<B>, Instant)>>,
}

impl<B> std::fmt::Debug for Upstream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl<B> Upstream<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(authority: &Authority) -> Self {
        Self {
            address: crate::control_address(authority),
            idle: Mutex::new(Vec::new()),
        }
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

    /// The most recently used open connection (warm in the server's caches too).
    fn take_idle(&self) -> Option<Sender<B>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Sender<B>, UpstreamError> {
        let connect_error = |source| UpstreamError::Connect {
            authority: self.address.clone(),
            source,
        };
        let stream = tokio::net::TcpStream::connect(self.address.as_str())
            .await
            .map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
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
