//! Serving HTTP/1 and HTTP/2 on a listener with graceful shutdown; shared by every server of
//! shadowdiff (tap, admin, demo services). The tap's hot path uses [`serve_connections_on_threads`].

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Time hyper-served connections have to send a whole request head (the tap's relay has its
/// own, configurable, head timeout).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Every hyper server of shadowdiff is built here: a client that never finishes a head is
/// closed after [`HEADER_READ_TIMEOUT`], as the relay closes one after its head timeout.
pub fn hyper_builder() -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // A client may shut its write side once its request is sent (HTTP/1.0 clients, `nc -N`)
        // and still wait for the answer, as the relay lets it: without this hyper dropped the
        // request on that EOF after the control had it, and the client got nothing (found by
        // the relay's property test with an HTTP/1.0 PUT).
        .half_close(true);
    builder
}

/// Binds `addr` and returns the listener with the address it got (a port of 0 picks one).
pub async fn bind(
    addr: std::net::SocketAddr,
) -> std::io::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Accepts connections until `shutdown` resolves, then waits up to `grace` for open
/// connections to finish their in-flight requests.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with_peer(listener, move |_| service.clone(), shutdown, grace).await
}

/// [`serve`] with a service made per connection from the peer's address, for servers whose
/// answers depend on who asks (the sandbox's side-effect lookup).
pub async fn serve_with_peer<F, S, B>(
    listener: TcpListener,
    make_service: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    F: Fn(std::net::SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let builder = hyper_builder();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), make_service(peer));
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(error = %error, "Connection ended with an error.");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "Connections still open after the grace period."
        );
    }
}

/// What a serving thread does with each connection it accepted: serve it until it ends, or
/// until `stop` turns true, and then finish the request in flight and close.
pub trait ConnectionHandler: Send + 'static {
    /// Serves `stream` until it ends, or until `stop` turns true and the request in flight is
    /// done.
    fn handle(
        &self,
        stream: TcpStream,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// Connections the server may serve at once, over all its threads; `None`: no limit.
    fn max_connections(&self) -> Option<usize> {
        None
    }

    /// Takes a connection accepted over the limit. It must not wait: the accept loop goes on.
    fn over_limit(&self, stream: TcpStream) {
        drop(stream);
    }
}

/// A hyper service as a [`ConnectionHandler`]: HTTP/1 and HTTP/2, with upgrades.
#[derive(Clone)]
pub struct HyperHandler<S> {
    service: S,
}

impl<S> HyperHandler<S> {
    /// Serves every connection with `service`.
    pub fn new(service: S) -> Self {
        Self { service }
    }
}

impl<S, B> ConnectionHandler for HyperHandler<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn handle(
        &self,
        stream: TcpStream,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        serve_hyper_connection(stream, self.service.clone(), stop, false)
    }
}

/// Serves one connection with hyper until it ends; when `stop` turns true, finishes the
/// requests in flight and closes. With `one_http1_request`, an HTTP/1 connection closes after
/// its first response (HTTP/2 is unaffected). The tap's relay hands connections over with it.
pub async fn serve_hyper_connection<I, S, B>(
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
    one_http1_request: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper_builder();
    builder.http1().keep_alive(!one_http1_request);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(error = %error, "Connection ended with an error.");
    }
}

/// Serves `listener` on `threads` OS threads with hyper, each thread with its own service from
/// `make_service`; see [`serve_connections_on_threads`].
pub async fn serve_on_threads<S, B, F>(
    listener: TcpListener,
    threads: usize,
    make_service: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    F: Fn() -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_connections_on_threads(
        listener,
        threads,
        move || HyperHandler::new(make_service()),
        shutdown,
        grace,
    )
    .await
}

/// Serves `listener` on `threads` OS threads, each running its own single-threaded runtime with
/// its own handler from `make_handler`, the way nginx runs its workers: a connection stays on
/// the thread that accepted it, and everything it does (the client side, the upstream side, the
/// copy) wakes only tasks of that thread. The tap needs this to keep up with nginx: on a shared
/// multi-threaded runtime, a proxied request hops between threads.
///
/// Every thread accepts from the same socket. Resolves once `shutdown` resolved and every
/// thread finished its graceful shutdown (each waits up to `grace` for its connections).
pub async fn serve_connections_on_threads<H, F>(
    listener: TcpListener,
    threads: usize,
    make_handler: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: ConnectionHandler,
{
    let listener = listener.into_std()?;
    let make_handler = std::sync::Arc::new(make_handler);
    let (stop, stopped) = watch::channel(false);
    // Connections open over every thread, for the handler's connection limit.
    let open_everywhere = std::sync::Arc::new(AtomicUsize::new(0));
    let mut finished = Vec::with_capacity(threads.max(1));
    for index in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let make_handler = make_handler.clone();
        let stopped = stopped.clone();
        let open_everywhere = open_everywhere.clone();
        let (done, finished_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("shadowdiff-tap-{index}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(error) => {
                            tracing::error!(%error, "A serving thread could not use the listener.");
                            return;
                        }
                    };
                    accept_until_stopped(listener, make_handler(), stopped, grace, open_everywhere)
                        .await;
                });
                let _ = done.send(());
            })?;
        finished.push(finished_rx);
    }
    drop(listener);
    shutdown.await;
    let _ = stop.send(true);
    for thread in finished {
        // An error means the thread ended without saying so (it panicked): nothing to wait for.
        let _ = thread.await;
    }
    Ok(())
}

/// One serving thread: accepts and spawns a task per connection until `stop`, then waits up
/// to `grace` for its connections to finish.
async fn accept_until_stopped<H: ConnectionHandler>(
    listener: TcpListener,
    handler: H,
    stop: watch::Receiver<bool>,
    grace: Duration,
    open_everywhere: std::sync::Arc<AtomicUsize>,
) {
    let mut stopping = stop.clone();
    let open = std::sync::Arc::new(AtomicUsize::new(0));
    let limit = handler.max_connections();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if limit.is_some_and(|max| open_everywhere.load(Ordering::Acquire) >= max) {
                    handler.over_limit(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let served = handler.handle(stream, stop.clone());
                let counted = (Open::count(&open), Open::count(&open_everywhere));
                tokio::spawn(async move {
                    served.await;
                    drop(counted);
                });
            }
            _ = stopped(&mut stopping) => break,
        }
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + grace;
    while open.load(Ordering::Acquire) > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                connections = open.load(Ordering::Acquire),
                "Connections still open after the grace period."
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Resolves once `stop` is true (or its sender is gone). Unlike `wait_for`, holds no lock
/// guard across the wait, so the future is `Send`.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Counts a connection as open until dropped.
struct Open(std::sync::Arc<AtomicUsize>);

impl Open {
    fn count(open: &std::sync::Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::AcqRel);
        Self(open.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
