//! Serving HTTP/1 and HTTP/2 on a listener with graceful shutdown; shared by every server of
//! shadowdiff (tap, admin, demo services). The tap's hot path uses [`serve_on_threads`].

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

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
    let graceful = GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "Accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service.clone());
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

/// Serves `listener` on `threads` OS threads, each running its own single-threaded runtime with
/// its own service from `make_service`, the way nginx runs its workers: a connection stays on
/// the thread that accepted it, and everything it does (the client side, the upstream side, the
/// copy) wakes only tasks of that thread. The tap needs this to keep up with nginx: on a shared
/// multi-threaded runtime, a proxied request hops between threads.
///
/// Every thread accepts from the same socket. Resolves once `shutdown` resolved and every
/// thread finished its graceful shutdown (each waits up to `grace`).
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
    let listener = listener.into_std()?;
    let make_service = std::sync::Arc::new(make_service);
    let (stop, stopped) = watch::channel(false);
    let mut finished = Vec::with_capacity(threads.max(1));
    for index in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let make_service = make_service.clone();
        let mut stopped = stopped.clone();
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
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    serve(listener, make_service(), shutdown, grace).await;
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
