//! The admin endpoints every long-running command serves: `/metrics`, `/healthz`, `/readyz`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once; later calls return the same handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed (e.g. by an embedding program).
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency checked by `/readyz`.
#[derive(Clone)]
pub struct ReadyCheck {
    /// Names the dependency in `/readyz`'s answer when it fails.
    pub name: String,
    /// Starts one check; `Err` holds why the dependency is not ready.
    pub check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadyCheck {
    /// Ready when a TCP connection to `addr` opens within a second.
    pub fn tcp(name: &str, addr: String) -> Self {
        Self {
            name: name.to_string(),
            check: Arc::new(move || {
                let addr = addr.clone();
                Box::pin(async move {
                    match tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(&addr),
                    )
                    .await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(format!("{addr}: {e}")),
                        Err(_) => Err(format!("{addr}: no answer within 1 s")),
                    }
                })
            }),
        }
    }
}

#[derive(Clone)]
struct Admin {
    checks: Arc<Vec<ReadyCheck>>,
    handle: Option<PrometheusHandle>,
}

impl hyper::service::Service<Request<Incoming>> for Admin {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (status, body) = match req.uri().path() {
                "/metrics" => (
                    StatusCode::OK,
                    this.handle.as_ref().map(|h| h.render()).unwrap_or_default(),
                ),
                "/healthz" => (StatusCode::OK, "ok\n".to_string()),
                "/readyz" => {
                    let mut failures = Vec::new();
                    for c in this.checks.iter() {
                        if let Err(e) = (c.check)().await {
                            failures.push(format!("{}: {e}", c.name));
                        }
                    }
                    if failures.is_empty() {
                        (StatusCode::OK, "ready\n".to_string())
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, failures.join("\n") + "\n")
                    }
                }
                _ => (
                    StatusCode::NOT_FOUND,
                    "try /metrics, /healthz or /readyz\n".to_string(),
                ),
            };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            Ok(r)
        })
    }
}

/// Binds the admin address and serves until `shutdown` resolves.
pub async fn start_admin(
    addr: SocketAddr,
    checks: Vec<ReadyCheck>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let admin = Admin {
        checks: Arc::new(checks),
        handle: metrics_handle(),
    };
    let task = tokio::spawn(shadowdiff_net::server::serve(
        listener,
        admin,
        shutdown,
        Duration::from_secs(1),
    ));
    Ok((bound, task))
}
