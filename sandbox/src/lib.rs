//! shadowdiff's egress sandbox: the HTTP forward proxy candidates use for their outbound calls
//! (`HTTP_PROXY`/`HTTPS_PROXY`), so a replayed request can never write to the real world.
//!
//! - The request target is parsed once ([`Target`]): the allowlist is checked against that value
//!   and the connection goes to that value. Userinfo (`user@host`) and ambiguous host spellings
//!   are refused and recorded.
//! - Reads (`GET`, `HEAD`, `OPTIONS`) are answered from canned responses when one matches,
//!   else passed to allowlisted hosts (host and port checked), else refused (403).
//! - Writes (every other method) are never passed on: they get a canned answer when one matches,
//!   else the block response, and are recorded as `METHOD host/path` under the exchange id the
//!   candidate forwarded in `x-shadow-exchange-id` (see docs/side-effects.md).
//! - `CONNECT` (HTTPS) tunnels are opaque, so writes in them cannot be blocked: they are refused
//!   (403) and recorded unless the host is declared write-safe (`allow_tunnel`).
//! - Requests addressed to the sandbox itself (origin form; never forwarded, whatever their
//!   `Host`): `GET /side-effects/{exchange_id}` returns the recorded list as JSON to loopback
//!   peers (127.0.0.1, ::1) unless `lookup_any_peer`; `GET /healthz` answers `ok`.

mod canned;
mod log;
mod target;
mod telemetry;

pub use canned::{Canned, CannedError, CannedResponse};
pub use log::SideEffectLog;
use target::Rule;
pub use target::{Target, TargetError};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowdiff_model::strip_hop_by_hop;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Hosts reads may reach: `api.internal`, `api.internal:8080` (that port only) or
    /// `*.internal` (any subdomain, optionally `*.internal:8080`).
    pub allow: Vec<String>,
    /// Hosts declared write-safe, the only ones `CONNECT` may tunnel to (same forms as `allow`):
    /// a tunnel is opaque, so the writes in it cannot be blocked or recorded.
    pub allow_tunnel: Vec<String>,
    /// Serve `GET /side-effects/{id}` to every peer, not only 127.0.0.1 and ::1 (for a
    /// replayer on another machine; the list shows what candidates tried to write).
    pub lookup_any_peer: bool,
    /// Answers given instead of passing a read on or blocking a write.
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
            allow_tunnel: Vec::new(),
            lookup_any_peer: false,
            canned: Canned::default(),
            block_status: 403,
            exchange_id_header: "x-shadow-exchange-id".to_string(),
            upstream_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a [`SandboxConfig`] cannot make a [`Sandbox`]; each variant holds the bad value.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `block_status` is not an HTTP status.
    #[error("block status {0} is not an HTTP status (use e.g. 403)")]
    BlockStatus(u16),
    /// `exchange_id_header` is not a header name.
    #[error("exchange id header `{0}` is not a valid header name")]
    Header(String),
    /// An `allow` entry does not parse.
    #[error("allowed host `{0}` is not `host`, `host:port`, `[ipv6]:port` or `*.domain`")]
    Allow(String),
    /// An `allow_tunnel` entry does not parse.
    #[error("tunnel host `{0}` is not `host`, `host:port`, `[ipv6]:port` or `*.domain`")]
    AllowTunnel(String),
}

/// The sandbox proxy service. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
    /// The connection's peer, when served by [`start`]; `None` gets no side-effect lookup.
    peer: Option<SocketAddr>,
}

struct Inner {
    allow: Vec<Rule>,
    allow_tunnel: Vec<Rule>,
    lookup_any_peer: bool,
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
    /// Checks `config` and builds the service; blocked writes are recorded in `log`.
    pub fn new(config: SandboxConfig, log: SideEffectLog) -> Result<Self, SandboxError> {
        let block_status = StatusCode::from_u16(config.block_status)
            .map_err(|_| SandboxError::BlockStatus(config.block_status))?;
        let id_header = HeaderName::from_bytes(config.exchange_id_header.as_bytes())
            .map_err(|_| SandboxError::Header(config.exchange_id_header.clone()))?;
        let allow = config
            .allow
            .iter()
            .map(|a| Rule::parse(a).ok_or_else(|| SandboxError::Allow(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let allow_tunnel = config
            .allow_tunnel
            .iter()
            .map(|a| Rule::parse(a).ok_or_else(|| SandboxError::AllowTunnel(a.clone())))
            .collect::<Result<Vec<_>, _>>()?;
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
                allow_tunnel,
                lookup_any_peer: config.lookup_any_peer,
                canned: config.canned,
                block_status,
                id_header,
                upstream_timeout: config.upstream_timeout,
                log,
                client,
            }),
            peer: None,
        })
    }

    /// This sandbox serving a connection from `peer` (which decides the side-effect lookup).
    pub fn for_peer(&self, peer: SocketAddr) -> Self {
        Self {
            inner: self.inner.clone(),
            peer: Some(peer),
        }
    }

    /// The log blocked writes are recorded in.
    pub fn log(&self) -> &SideEffectLog {
        &self.inner.log
    }

    /// Whether reads may reach `target`.
    pub fn allows(&self, target: &Target) -> bool {
        self.inner.allow.iter().any(|r| r.matches(target))
    }

    /// Whether `CONNECT` may tunnel to `target` (declared write-safe).
    pub fn allows_tunnel(&self, target: &Target) -> bool {
        self.inner.allow_tunnel.iter().any(|r| r.matches(target))
    }

    /// Whether `peer` may read the side-effect log over HTTP.
    fn lookup_permitted(&self) -> bool {
        self.inner.lookup_any_peer || self.peer.is_some_and(|p| is_local(p.ip()))
    }

    /// Serves one request.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<SandboxBody>, Infallible> {
        if req.method() == Method::CONNECT {
            return Ok(self.connect(req).await);
        }
        match Target::from_uri(req.uri()) {
            Some(Ok(target)) => Ok(self.forward(req, target).await),
            Some(Err(e)) => Ok(self.refuse_target(&req, e)),
            // Origin form is addressed to the sandbox itself; it is never forwarded by `Host`.
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

    /// Answers a request whose target could not be trusted, recording it under the host it
    /// was aimed at.
    fn refuse_target(&self, req: &Request<Incoming>, e: TargetError) -> Response<SandboxBody> {
        let id = self.exchange_id(req);
        let path = if req.method() == Method::CONNECT {
            ""
        } else {
            req.uri().path()
        };
        telemetry::request("refused");
        self.record(
            id.as_deref(),
            format!("{} {}{path} ({e})", req.method(), e.host()),
        );
        let status = if e.is_policy() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        blocked(status, &e.to_string())
    }

    async fn connect(&self, req: Request<Incoming>) -> Response<SandboxBody> {
        let Some(authority) = req.uri().authority() else {
            return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n");
        };
        let target = match Target::from_authority(authority, 443) {
            Ok(t) => t,
            Err(e) => return self.refuse_target(&req, e),
        };
        let id = self.exchange_id(&req);
        if !self.allows_tunnel(&target) {
            telemetry::request("refused");
            self.record(
                id.as_deref(),
                format!(
                    "CONNECT {} (tunnel to a host not declared write-safe)",
                    target.authority()
                ),
            );
            return blocked(
                StatusCode::FORBIDDEN,
                "CONNECT tunnels are opaque, so writes in them cannot be blocked; the host is not declared write-safe (allow_tunnel)",
            );
        }
        let authority = target.authority();
        let upstream = match tokio::time::timeout(
            self.inner.upstream_timeout,
            tokio::net::TcpStream::connect((target.dial_host(), target.port())),
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

    async fn forward(&self, req: Request<Incoming>, target: Target) -> Response<SandboxBody> {
        let host = target.host();
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let id = self.exchange_id(&req);
        if let Some(canned) = self.inner.canned.find(method.as_str(), host, &path) {
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
        if !self.allows(&target) {
            telemetry::request("refused");
            return blocked(StatusCode::FORBIDDEN, "host not on the sandbox allowlist");
        }
        let (mut parts, body) = req.into_parts();
        if !parts
            .uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
        {
            return text(
                StatusCode::BAD_REQUEST,
                "only http:// is proxied; use CONNECT for https\n",
            );
        }
        // The upstream request is rebuilt from the checked target: the client dials exactly it,
        // and `Host` names it (a proxy replaces the received `Host`, RFC 9112 §3.2.2).
        let authority = target.authority();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let (Ok(uri), Ok(host_header)) = (
            Uri::try_from(format!("http://{authority}{path_and_query}")),
            HeaderValue::try_from(target.host_header()),
        ) else {
            return text(StatusCode::BAD_REQUEST, "unusable request target\n");
        };
        parts.uri = uri;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(http::header::HOST, host_header);
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
            if !self.lookup_permitted() {
                tracing::debug!(peer = ?self.peer, "Side-effect lookup refused to a non-loopback peer.");
                return text(
                    StatusCode::FORBIDDEN,
                    "the side-effect lookup answers loopback peers only (see lookup_any_peer)\n",
                );
            }
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
    let task = tokio::spawn(shadowdiff_net::server::serve_with_peer(
        listener,
        move |peer| sandbox.for_peer(peer),
        shutdown,
        grace,
    ));
    tracing::info!(%bound, "Sandbox listening.");
    Ok((bound, task))
}

/// The loopback addresses proper. Not all of 127/8: on Linux every 127.x address is routed to
/// `lo`, and containers and tests use them to stand for other hosts.
fn is_local(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
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
        let t = |u: &str| Target::from_uri(&u.parse().unwrap()).unwrap().unwrap();
        assert!(s.allows(&t("http://api.internal/")));
        assert!(s.allows(&t("http://API.internal:8080/")));
        assert!(s.allows(&t("https://x.example.com/")));
        assert!(!s.allows(&t("http://example.com/")));
        assert!(s.allows(&t("http://127.0.0.1:9/")));
        assert!(!s.allows(&t("http://127.0.0.1:10/")));
        assert!(!s.allows(&t("http://evil.com/")));
        // Reads and tunnels have separate lists.
        assert!(!s.allows_tunnel(&t("https://api.internal/")));
        for bad in ["http://api.internal", "api.internal/x", "u@api.internal"] {
            assert!(Sandbox::new(
                SandboxConfig {
                    allow: vec![bad.into()],
                    ..SandboxConfig::default()
                },
                SideEffectLog::new(Duration::from_secs(1), 10)
            )
            .is_err());
        }
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
