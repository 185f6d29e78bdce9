//! shadowdiff's egress sandbox: the HTTP forward proxy candidates use for their outbound calls
//! (`HTTP_PROXY`/`HTTPS_PROXY`), so a replayed request can never write to the real world.
//!
//! - Reads (`GET`, `HEAD`, `OPTIONS`) are answered from canned responses when one matches,
//!   else passed to allowlisted hosts, else refused (403).
//! - Writes (every other method) are never passed on: they get a canned answer when one matches,
//!   else the block response, and are recorded as `METHOD host/path` under the exchange id the
//!   candidate forwarded in `x-shadow-exchange-id` (see docs/side-effects.md).
//! - `CONNECT` (HTTPS) tunnels to allowlisted hosts only; others are refused (403) and recorded.
//! - Requests addressed to the sandbox itself (origin form): `GET /side-effects/{exchange_id}`
//!   returns the recorded list as JSON, `GET /healthz` answers `ok`.

mod canned;
mod log;
mod telemetry;

pub use canned::{Canned, CannedError, CannedResponse};
pub use log::SideEffectLog;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowdiff_model::strip_hop_by_hop;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Hosts reads may reach: `api.internal`, `api.internal:8080` (that port only) or
    /// `*.internal` (any subdomain).
    pub allow: Vec<String>,
    pub canned: Canned,
    /// Status of the answer to a blocked write.
    pub block_status: u16,
    /// Header carrying the exchange id (the replayer's `exchange_id_header`).
    pub exchange_id_header: String,
    /// Time an allowlisted host has to answer a passed read.
    pub upstream_timeout: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            canned: Canned::default(),
            block_status: 403,
            exchange_id_header: "x-shadow-exchange-id".to_string(),
            upstream_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("block status {0} is not an HTTP status (use e.g. 403)")]
    BlockStatus(u16),
    #[error("exchange id header `{0}` is not a valid header name")]
    Header(String),
    #[error("allowed host `{0}` is empty or has a scheme or path; use `host`, `host:port` or `*.domain`")]
    Allow(String),
}

/// The sandbox proxy service. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    allow: Vec<String>,
    canned: Canned,
    block_status: StatusCode,
    id_header: HeaderName,
    upstream_timeout: Duration,
    log: SideEffectLog,
    client: Client<HttpConnector, Incoming>,
}

/// What the sandbox answers with: an upstream body passed through, or its own.
pub type SandboxBody = Either<Incoming, Full<Bytes>>;

const SAFE: &[Method] = &[Method::GET, Method::HEAD, Method::OPTIONS];

impl Sandbox {
    pub fn new(config: SandboxConfig, log: SideEffectLog) -> Result<Self, SandboxError> {
        let block_status = StatusCode::from_u16(config.block_status)
            .map_err(|_| SandboxError::BlockStatus(config.block_status))?;
        let id_header = HeaderName::from_bytes(config.exchange_id_header.as_bytes())
            .map_err(|_| SandboxError::Header(config.exchange_id_header.clone()))?;
        let mut allow = Vec::new();
        for a in &config.allow {
            let a = a.trim().to_ascii_lowercase();
            if a.is_empty() || a.contains('/') {
                return Err(SandboxError::Allow(a));
            }
            allow.push(a);
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.upstream_timeout));
        let client = Client::builder(TokioExecutor::new())
            // A sandbox never retries: a retried call could be a second effect.
            .retry_canceled_requests(false)
            .build(connector);
        telemetry::describe();
        Ok(Self {
            inner: Arc::new(Inner {
                allow,
                canned: config.canned,
                block_status,
                id_header,
                upstream_timeout: config.upstream_timeout,
                log,
                client,
            }),
        })
    }

    pub fn log(&self) -> &SideEffectLog {
        &self.inner.log
    }

    /// Whether `authority` (`host` or `host:port`) is on the allowlist.
    pub fn allowed(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = host_of(&authority);
        self.inner.allow.iter().any(|a| {
            if let Some(suffix) = a.strip_prefix("*.") {
                host.ends_with(&format!(".{suffix}"))
            } else if a.contains(':') {
                *a == authority
            } else {
                *a == host
            }
        })
    }

    /// Serves one request.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<SandboxBody>, Infallible> {
        if req.method() == Method::CONNECT {
            return Ok(self.connect(req).await);
        }
        match req.uri().authority().cloned() {
            Some(authority) => Ok(self.forward(req, authority.as_str().to_string()).await),
            None => Ok(self.own(&req)),
        }
    }

    fn exchange_id(&self, req: &Request<Incoming>) -> Option<String> {
        req.headers()
            .get(&self.inner.id_header)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn record(&self, exchange_id: Option<&str>, effect: String) {
        match exchange_id {
            Some(id) => {
                if !self.inner.log.record(id, effect.clone()) {
                    telemetry::log_refused();
                    tracing::warn!(
                        exchange_id = id,
                        effect,
                        "Side-effect log full; not recorded."
                    );
                } else {
                    tracing::debug!(exchange_id = id, effect, "Blocked a side effect.");
                }
            }
            None => tracing::warn!(
                effect,
                header = %self.inner.id_header,
                "Blocked a side effect without an exchange id; the candidate must forward the header."
            ),
        }
    }

    async fn connect(&self, req: Request<Incoming>) -> Response<SandboxBody> {
        let Some(authority) = req.uri().authority().map(|a| a.as_str().to_string()) else {
            return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
        };
        let id = self.exchange_id(&req);
        if !self.allowed(&authority) {
            telemetry::request("refused");
            self.record(id.as_deref(), format!("CONNECT {authority}"));
            return blocked(StatusCode::FORBIDDEN, "host not on the sandbox allowlist");
        }
        let upstream = match tokio::time::timeout(
            self.inner.upstream_timeout,
            tokio::net::TcpStream::connect(authority.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return text(StatusCode::BAD_GATEWAY, &format!("{authority}: {e}\n")),
            Err(_) => return text(StatusCode::GATEWAY_TIMEOUT, "connect timed out\n"),
        };
        telemetry::request("tunnel");
        tokio::spawn(async move {
            let mut upstream = upstream;
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(%error, "Tunnel ended with an error.");
                    }
                }
                Err(error) => tracing::debug!(%error, "CONNECT upgrade failed."),
            }
        });
        Response::new(Either::Right(Full::new(Bytes::new())))
    }

    async fn forward(&self, req: Request<Incoming>, authority: String) -> Response<SandboxBody> {
        let host = host_of(&authority).to_string();
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let id = self.exchange_id(&req);
        if let Some(canned) = self.inner.canned.find(method.as_str(), &host, &path) {
            if !SAFE.contains(&method) {
                self.record(id.as_deref(), format!("{method} {host}{path}"));
            }
            telemetry::request("canned");
            return canned_response(canned);
        }
        if !SAFE.contains(&method) {
            telemetry::request("blocked");
            self.record(id.as_deref(), format!("{method} {host}{path}"));
            return blocked(
                self.inner.block_status,
                "writes are blocked during shadow replay",
            );
        }
        if !self.allowed(&authority) {
            telemetry::request("refused");
            return blocked(StatusCode::FORBIDDEN, "host not on the sandbox allowlist");
        }
        let (mut parts, body) = req.into_parts();
        if parts.uri.scheme_str() != Some("http") {
            return text(
                StatusCode::BAD_REQUEST,
                "only http:// is proxied; use CONNECT for https\n",
            );
        }
        strip_hop_by_hop(&mut parts.headers);
        let sent = self.inner.client.request(Request::from_parts(parts, body));
        match tokio::time::timeout(self.inner.upstream_timeout, sent).await {
            Ok(Ok(resp)) => {
                telemetry::request("passed");
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Ok(Err(e)) => text(StatusCode::BAD_GATEWAY, &format!("{authority}: {e}\n")),
            Err(_) => text(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n"),
        }
    }

    /// Requests addressed to the sandbox itself.
    fn own(&self, req: &Request<Incoming>) -> Response<SandboxBody> {
        let path = req.uri().path();
        if let Some(id) = path.strip_prefix("/side-effects/") {
            let list = self.inner.log.get(id);
            let mut r = Response::new(Either::Right(Full::new(Bytes::from(
                serde_json::to_vec(&list).unwrap_or_default(),
            ))));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return r;
        }
        if path == "/healthz" {
            return text(StatusCode::OK, "ok\n");
        }
        text(
            StatusCode::BAD_REQUEST,
            "this is shadowdiff's egress sandbox, a forward proxy: set HTTP_PROXY to it\n",
        )
    }
}

impl hyper::service::Service<Request<Incoming>> for Sandbox {
    type Response = Response<SandboxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(req).await })
    }
}

/// Binds `addr` and serves the sandbox until `shutdown` resolves, then drains for `grace`.
pub async fn start(
    addr: SocketAddr,
    sandbox: Sandbox,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(shadowdiff_capture::server::serve(
        listener, sandbox, shutdown, grace,
    ));
    tracing::info!(%bound, "Sandbox listening.");
    Ok((bound, task))
}

/// `host` of `host:port` (IPv6 literals keep their brackets).
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn text(status: StatusCode, body: &str) -> Response<SandboxBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = status;
    r
}

fn blocked(status: StatusCode, reason: &str) -> Response<SandboxBody> {
    let body = serde_json::json!({"blocked_by": "shadowdiff-sandbox", "reason": reason});
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        HeaderName::from_static("x-shadowdiff-sandbox"),
        HeaderValue::from_static("blocked"),
    );
    r
}

fn canned_response(c: &CannedResponse) -> Response<SandboxBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from(c.body.clone()))));
    *r.status_mut() = StatusCode::from_u16(c.status).unwrap_or(StatusCode::OK);
    for (k, v) in &c.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r.headers_mut().insert(
        HeaderName::from_static("x-shadowdiff-sandbox"),
        HeaderValue::from_static("canned"),
    );
    r
}

/// Parses `http://host:port` given to `--sandbox-url` and friends.
pub fn parse_base(url: &str) -> Option<Uri> {
    let uri: Uri = url.parse().ok()?;
    (uri.scheme_str() == Some("http") && uri.authority().is_some()).then_some(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_forms() {
        let s = Sandbox::new(
            SandboxConfig {
                allow: vec![
                    "api.internal".into(),
                    "*.example.com".into(),
                    "127.0.0.1:9".into(),
                ],
                ..SandboxConfig::default()
            },
            SideEffectLog::new(Duration::from_secs(1), 10),
        )
        .unwrap();
        assert!(s.allowed("api.internal"));
        assert!(s.allowed("API.internal:8080"));
        assert!(s.allowed("x.example.com:443"));
        assert!(!s.allowed("example.com"));
        assert!(s.allowed("127.0.0.1:9"));
        assert!(!s.allowed("127.0.0.1:10"));
        assert!(!s.allowed("evil.com"));
        assert!(Sandbox::new(
            SandboxConfig {
                block_status: 1000,
                ..SandboxConfig::default()
            },
            SideEffectLog::new(Duration::from_secs(1), 10)
        )
        .is_err());
    }
}
