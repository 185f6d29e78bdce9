//! shadowdiff's replayer.
//!
//! [`Replayer::replay`] takes a captured [`Exchange`], asks the side-effect guard whether it may
//! be replayed, and sends it to every target at once (candidates, the secondary, and in mirror
//! mode a control replica), each under a timeout. Requests are never retried — a retry of a
//! non-idempotent request could be a second write — except one of the [`SAFE_METHODS`] (GET,
//! HEAD, OPTIONS) whose kept-alive connection turns out closed before a byte of answer.
//!
//! The requests are written by hand ([`shadowdiff_net::h1::ConnectionPool`]): the replayer
//! frames them itself (its own `Content-Length`, no framing or hop-by-hop field of the
//! capture, no field name or value a parser could read two ways) and reads the answers with
//! the relay's strict framing rules.

mod policy;
mod side_effects;
mod telemetry;

pub use policy::{
    AllowRule, BlockKind, Blocked, Policy, PolicyError, METHOD_OVERRIDE_HEADERS,
    METHOD_OVERRIDE_PARAM, SAFE_METHODS,
};
pub use side_effects::{HttpSideEffects, SideEffectSource, SideEffectsFuture};

use http::{HeaderName, HeaderValue, Uri};
use shadowdiff_model::secrets::{edit_query, percent_encode, NameSet, QueryEdit};
use shadowdiff_model::{
    is_hop_by_hop, Body, Exchange, HttpResponse, ReplayResult, RouteInferrer, TargetError,
    TargetErrorKind, TargetOutcome, TargetRole, SCHEMA_VERSION,
};
use shadowdiff_net::h1::{
    is_token, push_field, push_length, ConnectionPool, ExchangeError, ResponseReader,
};
use shadowdiff_net::pool::Endpoint;
use shadowdiff_net::tls::ClientTls;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A replay target. A clone has the same settings and connections of its own: a connection
/// is registered with the runtime that opened it and must be used there (each replay thread
/// builds its replayer from clones of the configured targets).
#[derive(Debug)]
pub struct Target {
    /// Name in records and reports.
    pub name: String,
    /// What the target is for.
    pub role: TargetRole,
    /// The URL requests are sent to (their path and query replace its own).
    pub base: Uri,
    /// `host: <authority>\r\n`, the first field of every request to it.
    host_line: Vec<u8>,
    /// Its keep-alive connections (not shared with clones of the target).
    connections: Arc<ConnectionPool>,
    /// Set for the control asked a second time as the A/A baseline (`--secondary self`): only
    /// requests the default side-effect guard calls safe go, at most at this rate.
    self_secondary: Option<Arc<SelfSecondary>>,
    /// Its response-time histogram, looked up at its first replay (targets are built before the
    /// metrics recorder is installed) and kept: looking it up by label on every replay cost a
    /// label string, a hash and a registry lookup each time.
    latency: Arc<std::sync::OnceLock<metrics::Histogram>>,
}

impl Clone for Target {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            role: self.role,
            base: self.base.clone(),
            host_line: self.host_line.clone(),
            connections: Arc::new(ConnectionPool::new(self.connections.endpoint().clone())),
            self_secondary: self.self_secondary.clone(),
            latency: self.latency.clone(),
        }
    }
}

/// The admission of `--secondary self`: the control is asked again only for requests the
/// default guard (no `[[replay.allow]]`) replays — GET, HEAD, OPTIONS without a body or a
/// method override — and at most `max_rate` a second.
#[derive(Debug)]
struct SelfSecondary {
    guard: Policy,
    /// Microseconds between two admitted requests; 0 = no cap.
    interval_us: u64,
    /// When the next request may go, in microseconds since `origin`.
    next_us: std::sync::atomic::AtomicU64,
    origin: Instant,
}

impl SelfSecondary {
    fn admits(&self, request: &shadowdiff_model::HttpRequest, route: &str) -> bool {
        use std::sync::atomic::Ordering;
        if self.guard.check_request(request, route).is_some() {
            return false;
        }
        if self.interval_us == 0 {
            return true;
        }
        let now = self.origin.elapsed().as_micros() as u64;
        let mut next = self.next_us.load(Ordering::Relaxed);
        loop {
            if now < next {
                return false;
            }
            match self.next_us.compare_exchange_weak(
                next,
                now + self.interval_us,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => next = current,
            }
        }
    }
}

/// Why a target or a [`ReplayConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplayConfigError {
    /// A target's URL is not an absolute http(s) URL.
    #[error("{what} URL `{url}` must be an absolute http:// or https:// URL such as http://127.0.0.1:8082")]
    BadUrl {
        /// The target, e.g. ``candidate `v2` ``.
        what: String,
        /// The URL as given.
        url: String,
    },
    /// Two targets have the same name.
    #[error("candidate name `{0}` is used twice")]
    DuplicateName(String),
    /// No target is a candidate.
    #[error("at least one candidate is needed (--candidate NAME=URL)")]
    NoCandidates,
    /// The shadow header, the exchange id header or a credential header is not a valid header
    /// name or value.
    #[error("shadow header `{0}` is not a valid header name")]
    BadHeader(String),
}

impl Target {
    /// A target at `url` (`http://` or `https://`); `tls` (trusted CAs, a client certificate)
    /// is used for https. The TLS server name is the URL's host; the Host header is its
    /// authority, as for http.
    pub fn new(
        name: &str,
        role: TargetRole,
        url: &str,
        tls: &ClientTls,
    ) -> Result<Self, ReplayConfigError> {
        let bad = || ReplayConfigError::BadUrl {
            what: format!("{} `{name}`", role_name(role)),
            url: url.to_string(),
        };
        let base: Uri = url.parse().map_err(|_| bad())?;
        let endpoint = Endpoint::new(&base, tls).map_err(|_| bad())?;
        let authority = base.authority().ok_or_else(bad)?;
        // The candidate's own authority, not production's.
        let host_line = format!("host: {authority}\r\n").into_bytes();
        Ok(Self {
            name: name.to_string(),
            role,
            base,
            host_line,
            connections: Arc::new(ConnectionPool::new(endpoint)),
            self_secondary: None,
            latency: Arc::default(),
        })
    }

    /// The control at `url`, asked a second time as the secondary (`--secondary self`): only
    /// safe requests (GET, HEAD, OPTIONS without a body or a method override, whatever
    /// `[[replay.allow]]` lets candidates see), at most `max_rate` a second (0 = no cap), so
    /// a write never reaches the control twice.
    pub fn control_as_secondary(
        url: &str,
        tls: &ClientTls,
        max_rate: u32,
    ) -> Result<Self, ReplayConfigError> {
        let mut target = Self::new("secondary", TargetRole::Secondary, url, tls)?;
        let guard = Policy::new(&[]).map_err(|_| ReplayConfigError::BadUrl {
            what: "secondary `self`".to_string(),
            url: url.to_string(),
        })?;
        target.self_secondary = Some(Arc::new(SelfSecondary {
            guard,
            interval_us: if max_rate == 0 {
                0
            } else {
                1_000_000 / u64::from(max_rate)
            },
            next_us: std::sync::atomic::AtomicU64::new(0),
            origin: Instant::now(),
        }));
        Ok(target)
    }

    /// True for the control asked again as the secondary (`--secondary self`).
    pub fn is_self_secondary(&self) -> bool {
        self.self_secondary.is_some()
    }
}

fn role_name(role: TargetRole) -> &'static str {
    match role {
        TargetRole::Candidate => "candidate",
        TargetRole::Secondary => "secondary",
        TargetRole::Control => "control replica",
        TargetRole::Repeat => "repeat",
    }
}

/// What [`Replayer::new`] needs.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Candidates, the secondary and (mirror mode) a control replica; at least one candidate.
    pub targets: Vec<Target>,
    /// Time each target has for a complete answer.
    pub timeout: Duration,
    /// Response bodies are kept up to this many bytes, then marked truncated.
    pub body_limit: usize,
    /// The side-effect guard.
    pub policy: Policy,
    /// Header that marks shadow traffic (default `x-shadow: 1`).
    pub shadow_header: (String, String),
    /// Header carrying the exchange id, so the egress sandbox can attribute side effects.
    pub exchange_id_header: String,
    /// Request headers removed before replay (credentials by default; see
    /// `shadowdiff_model::secrets`).
    pub strip_headers: Vec<String>,
    /// Query parameters removed before replay, matched by decoded name ignoring case.
    pub strip_query: Vec<String>,
    /// Gives each request the route the guard's allow rules match.
    pub routes: RouteInferrer,
}

impl ReplayConfig {
    /// `targets` with the defaults of `shadowdiff run`: a 5 s timeout, bodies kept up to
    /// 256 KiB, safe methods only, `x-shadow: 1` and `x-shadow-exchange-id`, the default
    /// credential headers and query parameters stripped (`shadowdiff_model::secrets`), routes
    /// inferred from paths alone. Change fields with struct update syntax.
    pub fn new(targets: Vec<Target>) -> Self {
        use shadowdiff_model::secrets::{SECRET_HEADERS, SECRET_QUERY_PARAMS};
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect();
        Self {
            targets,
            timeout: Duration::from_secs(5),
            body_limit: 256 * 1024,
            policy: Policy::default(),
            shadow_header: ("x-shadow".into(), "1".into()),
            exchange_id_header: "x-shadow-exchange-id".into(),
            strip_headers: names(SECRET_HEADERS),
            strip_query: names(SECRET_QUERY_PARAMS),
            routes: RouteInferrer::new(Vec::new()),
        }
    }
}

/// Sends exchanges to the targets and collects their answers.
pub struct Replayer {
    config: ReplayConfig,
    shadow_header: (HeaderName, HeaderValue),
    exchange_id_header: HeaderName,
    /// `config.strip_headers` and `config.strip_query`, looked up by length.
    strip_headers: NameSet,
    strip_query: NameSet,
    candidates: Vec<String>,
    /// Synthetic tenant credentials set after stripping (see [`Replayer::with_credentials`]).
    credentials: Vec<(HeaderName, HeaderValue)>,
    /// Synthetic query parameter values (name, percent-encoded value), set where the request
    /// has the parameter (see [`Replayer::with_query_credentials`]).
    query_credentials: Vec<(String, String)>,
    side_effects: Option<Arc<dyn SideEffectSource>>,
    response_filter: Option<ResponseFilter>,
}

/// Applied to every target response before it is diffed (e.g. the tap's redaction).
pub type ResponseFilter = Arc<dyn Fn(&mut HttpResponse) + Send + Sync>;

impl Replayer {
    /// Checks the config's targets and headers.
    pub fn new(config: ReplayConfig) -> Result<Self, ReplayConfigError> {
        let candidates: Vec<String> = config
            .targets
            .iter()
            .filter(|t| t.role == TargetRole::Candidate)
            .map(|t| t.name.clone())
            .collect();
        if candidates.is_empty() {
            return Err(ReplayConfigError::NoCandidates);
        }
        let mut names = std::collections::HashSet::new();
        for t in &config.targets {
            if !names.insert(t.name.as_str()) {
                return Err(ReplayConfigError::DuplicateName(t.name.clone()));
            }
        }
        let header_name = |h: &str| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| ReplayConfigError::BadHeader(h.to_string()))
        };
        let shadow_header = (
            header_name(&config.shadow_header.0)?,
            HeaderValue::from_str(&config.shadow_header.1)
                .map_err(|_| ReplayConfigError::BadHeader(config.shadow_header.1.clone()))?,
        );
        let exchange_id_header = header_name(&config.exchange_id_header)?;
        telemetry::describe();
        Ok(Self {
            strip_headers: NameSet::new(&config.strip_headers),
            strip_query: NameSet::new(&config.strip_query),
            config,
            shadow_header,
            exchange_id_header,
            candidates,
            credentials: Vec::new(),
            query_credentials: Vec::new(),
            side_effects: None,
            response_filter: None,
        })
    }

    /// Headers set on every replayed request after stripping, e.g. a synthetic tenant's
    /// `authorization: Bearer synthetic`, so candidates authenticate without real credentials.
    pub fn with_credentials(
        mut self,
        credentials: &[(String, String)],
    ) -> Result<Self, ReplayConfigError> {
        for (name, value) in credentials {
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| ReplayConfigError::BadHeader(name.clone()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ReplayConfigError::BadHeader(format!("{name}: <value>")))?;
            self.credentials.push((name, value));
        }
        Ok(self)
    }

    /// Query parameters whose value is replaced on every replayed request that has them, e.g.
    /// a synthetic tenant's `api_key`; a stripped parameter without one is dropped.
    pub fn with_query_credentials(mut self, credentials: &[(String, String)]) -> Self {
        for (name, value) in credentials {
            self.query_credentials
                .push((name.clone(), percent_encode(value)));
        }
        self
    }

    /// Transforms every target response, e.g. with the tap's redaction so that redacted control
    /// values compare equal to the candidate's.
    pub fn with_response_filter(mut self, filter: ResponseFilter) -> Self {
        self.response_filter = Some(filter);
        self
    }

    /// Attaches the side effects the egress sandbox blocked to each result.
    pub fn with_side_effects(mut self, source: Arc<dyn SideEffectSource>) -> Self {
        self.side_effects = Some(source);
        self
    }

    /// The candidates' names, in configured order.
    pub fn candidates(&self) -> &[String] {
        &self.candidates
    }

    /// Replays one exchange to every target concurrently.
    pub async fn replay(&self, exchange: Exchange) -> ReplayResult {
        let route = self.config.routes.route(&exchange.request.uri);
        let blocked = match self.config.policy.check_request(&exchange.request, &route) {
            Some(b) => Some((b.kind.as_str(), b.reason)),
            None if exchange.request.body.truncated => Some((
                "truncated_request",
                "request body truncated at capture; a partial body is not replayed".to_string(),
            )),
            None => None,
        };
        if let Some((kind, reason)) = blocked {
            telemetry::blocked(kind);
            tracing::debug!(exchange_id = %exchange.id, reason, "Not replayed.");
            let blocked = Some(reason);
            return ReplayResult {
                schema_version: SCHEMA_VERSION,
                exchange,
                blocked,
                outcomes: Vec::new(),
                candidates: self.candidates.clone(),
                side_effects: Vec::new(),
                saturated: false,
                host_busy: false,
            };
        }
        // A control replica is asked only when the tap saw no control response (mirror mode).
        let has_control = exchange.control.is_some();
        let sends = self
            .config
            .targets
            .iter()
            .filter(|t| !(has_control && t.role == TargetRole::Control))
            .filter(|t| {
                t.self_secondary
                    .as_ref()
                    .is_none_or(|s| s.admits(&exchange.request, &route))
            })
            .map(|t| self.send(t, &exchange));
        let mut outcomes = futures_util::future::join_all(sends).await;
        if let Some(filter) = &self.response_filter {
            for o in &mut outcomes {
                if let Ok(response) = &mut o.result {
                    filter(response);
                }
            }
        }
        telemetry::replayed();
        // Every target has answered, so whatever it tried through the sandbox is recorded.
        let side_effects = match &self.side_effects {
            Some(source) => source.take(&exchange.id).await,
            None => Vec::new(),
        };
        ReplayResult {
            schema_version: SCHEMA_VERSION,
            exchange,
            blocked: None,
            outcomes,
            candidates: self.candidates.clone(),
            side_effects,
            saturated: false,
            host_busy: false,
        }
    }

    async fn send(&self, target: &Target, exchange: &Exchange) -> TargetOutcome {
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.config.timeout, self.request(target, exchange)).await {
                Ok(r) => r,
                Err(_) => Err(TargetError {
                    kind: TargetErrorKind::Timeout,
                    message: format!(
                        "no complete answer within {} ms",
                        self.config.timeout.as_millis()
                    ),
                }),
            }
            .map(|mut r| {
                r.latency_us = started.elapsed().as_micros() as u64;
                r
            });
        match &result {
            // One clock reading for the record and the histogram.
            Ok(r) => target
                .latency
                .get_or_init(|| telemetry::target_latency(&target.name))
                .record(r.latency_us as f64 / 1e6),
            Err(e) => telemetry::target_error(&target.name, e.kind),
        }
        TargetOutcome {
            target: target.name.clone(),
            role: target.role,
            result,
        }
    }

    async fn request(
        &self,
        target: &Target,
        exchange: &Exchange,
    ) -> Result<HttpResponse, TargetError> {
        let protocol = |message: String| TargetError {
            kind: TargetErrorKind::Protocol,
            message,
        };
        let req = &exchange.request;
        let mut head = self
            .request_head(target, exchange)
            .map_err(|why| protocol(why.to_string()))?;
        let is_head = req.method == "HEAD";
        let mut reader = ResponseReader::new(is_head, self.config.body_limit);
        let response = target
            .connections
            .exchange(
                &mut head,
                &req.body.bytes,
                SAFE_METHODS.contains(&req.method.as_str()),
                &mut reader,
            )
            .await
            .map_err(|e: ExchangeError| TargetError {
                kind: match e {
                    ExchangeError::Connect(_) => TargetErrorKind::Connect,
                    ExchangeError::Response(_) => TargetErrorKind::Protocol,
                },
                message: error_chain(&e),
            })?;
        let truncated = response.body_len > response.body.len() as u64;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: Body::partial(response.body, response.body_len, truncated),
            latency_us: 0,
        })
    }

    /// The request head sent to `target`: the captured request line and fields without
    /// secrets, hop-by-hop or framing fields and without any field that is not a valid token
    /// name with a visible-ASCII value (those are dropped, as `http`'s types refuse them);
    /// then the target's `host`, the synthetic credentials, the shadow and exchange id fields
    /// (each replacing the captured one) and the replayer's own `content-length`.
    fn request_head(&self, target: &Target, exchange: &Exchange) -> Result<Vec<u8>, &'static str> {
        let req = &exchange.request;
        if req.method.is_empty() || !req.method.bytes().all(is_token) {
            return Err("invalid HTTP method");
        }
        let path = if req.uri.starts_with('/') {
            req.uri.as_str()
        } else {
            "/"
        };
        let without_secrets = self.strip_query(path);
        let path = request_target(without_secrets.as_deref().unwrap_or(path))?;
        let mut head = Vec::with_capacity(256 + path.len() + req.headers.len() * 48);
        head.extend_from_slice(req.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        head.extend_from_slice(&target.host_line);
        for (name, value) in &req.headers {
            let replaced = name.eq_ignore_ascii_case("host")
                || name.eq_ignore_ascii_case("content-length")
                || is_hop_by_hop(name)
                || self.strip_headers.contains(name)
                || self
                    .credentials
                    .iter()
                    .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
                || self.shadow_header.0.as_str().eq_ignore_ascii_case(name)
                || self.exchange_id_header.as_str().eq_ignore_ascii_case(name);
            if replaced || !is_field_name(name) || !is_field_value(value.as_bytes()) {
                continue;
            }
            push_field(
                &mut head,
                name.to_ascii_lowercase().as_bytes(),
                value.as_bytes(),
            );
        }
        for (name, value) in &self.credentials {
            push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
        let (shadow_name, shadow_value) = &self.shadow_header;
        push_field(
            &mut head,
            shadow_name.as_str().as_bytes(),
            shadow_value.as_bytes(),
        );
        if is_field_value(exchange.id.as_bytes()) {
            let name = self.exchange_id_header.as_str().as_bytes();
            push_field(&mut head, name, exchange.id.as_bytes());
        }
        let length = req.body.bytes.len();
        // RFC 9110 §8.6: a request that normally carries a body states an empty one.
        if length > 0 || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
            push_length(&mut head, length as u64);
        }
        head.extend_from_slice(b"\r\n");
        Ok(head)
    }
}

/// A field name `http::HeaderName` accepts: one token or more.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token)
}

/// A field value `http::HeaderValue::from_str` accepts: visible ASCII, spaces and tabs.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// The origin-form request target as `http::uri::PathAndQuery` has it: a fragment (from `#`)
/// is never sent, and a byte that could end or split the request line (a space, a control
/// character) refuses the request.
fn request_target(path: &str) -> Result<&str, &'static str> {
    let path = path.split('#').next().unwrap_or(path);
    if path
        .bytes()
        .all(|b| (b'!'..=b'~').contains(&b) || b >= 0x80)
    {
        Ok(path)
    } else {
        Err("request target with a space or a control character")
    }
}

impl Replayer {
    /// The path and query without secret parameters (or with the synthetic tenant's values);
    /// `None` when nothing had to change.
    fn strip_query(&self, path: &str) -> Option<String> {
        if !path.contains('?') {
            return None;
        }
        edit_query(path, |name, _| {
            if let Some((_, value)) = self
                .query_credentials
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                QueryEdit::Replace(value.clone())
            } else if self.strip_query.contains(name) {
                QueryEdit::Drop
            } else {
                QueryEdit::Keep
            }
        })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        // Many errors repeat their source in their own text.
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    // A refused client certificate shows only on the first read after the handshake.
    if let Some(hint) = shadowdiff_net::tls::hint(e) {
        if !s.contains(hint) {
            s.push_str(&format!(" ({hint})"));
        }
    }
    s
}
