//! shadowdiff's tap.
//!
//! [`TeeProxy`] sits in front of the control: every request goes to the control and the client
//! gets the control's answer exactly, streamed. A bounded copy of the request and response goes
//! to an [`ExchangeSink`] without ever waiting: when the sink is full the copy is dropped and
//! counted. Nothing behind the tap (queue, replayer, candidates) can slow or fail a client.

#[cfg(feature = "differential")]
#[doc(hidden)]
pub mod differential;
pub mod mirror;
pub mod redact;
pub mod relay;
pub mod sample;
pub mod tee;
mod telemetry;

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use shadowdiff_model::{
    headers_from_http, strip_hop_by_hop, Body, Exchange, HttpRequest, HttpResponse, SCHEMA_VERSION,
};
use shadowdiff_net::pool::{Endpoint, Upstream};
use shadowdiff_net::tls::ClientTls;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tee::{Captured, TeeBody};

pub use telemetry::{DropReason, Refusal};

/// Where captured exchanges go. `offer` must return at once.
pub trait ExchangeSink: Send + Sync + 'static {
    /// Takes the exchange, or says at once why not (the tap then drops and counts it).
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError>;
}

/// Why a sink did not take an exchange.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    /// The queue (or its byte budget) is full.
    #[error("queue full")]
    Full,
    /// The queue is closed (shutting down).
    #[error("queue closed")]
    Closed,
    /// The sink refused it for another reason, given as text.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// A bounded in-memory queue as a sink: the embedded pipeline's capture → replay link.
impl ExchangeSink for tokio::sync::mpsc::Sender<Exchange> {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        self.try_send(exchange).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => OfferError::Full,
            tokio::sync::mpsc::error::TrySendError::Closed(_) => OfferError::Closed,
        })
    }
}

/// Why the tap cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The control URL is not an absolute http(s) URL with a usable host.
    #[error("control URL `{0}` must be an absolute http:// or https:// URL such as http://127.0.0.1:8081")]
    BadControl(String),
}

/// Tap settings.
#[derive(Debug, Clone)]
pub struct TeeConfig {
    /// Base URL of the control (`http://host:port` or `https://host:port`); the request's path
    /// and query are appended.
    pub control: Uri,
    /// Trust and client certificate for an `https://` control (unused for `http://`).
    pub tls: ClientTls,
    /// Bodies are copied up to this many bytes, then marked truncated.
    pub body_limit: usize,
    /// Stamped on every exchange.
    pub experiment: String,
    /// Keep the client's Host header instead of the control's authority.
    pub preserve_host: bool,
    /// The whole control exchange (request, response head and body) must finish within this
    /// time: before the response head the client gets a 504, after it the connection is cut.
    pub control_timeout: Duration,
    /// How long clients may take, and how many may be connected at once.
    pub limits: TapLimits,
    /// Request fields a client may not send to the control (compared case-insensitively): the
    /// replayer's shadow markers, which would make production treat the request as shadow
    /// traffic.
    pub shadow_markers: Vec<String>,
}

/// The tap's defences against clients that hold it open: no looser than nginx's defaults
/// (`client_header_timeout` 60 s, `keepalive_timeout` 75 s, `client_body_timeout` 60 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapLimits {
    /// A request head must arrive whole within this time of its first byte (and a new
    /// connection must start one within it); else 408 and close.
    pub head_timeout: Duration,
    /// An idle kept-alive connection is closed after this time without a new request.
    pub keep_alive_timeout: Duration,
    /// A request body may pause this long between reads; else 408 and close.
    pub body_timeout: Duration,
    /// Connections served at once by the process; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
}

impl Default for TapLimits {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(15),
            keep_alive_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// The replayer's default shadow markers (`x-shadow: 1`, `x-shadow-exchange-id`).
pub const DEFAULT_SHADOW_MARKERS: [&str; 2] = ["x-shadow", "x-shadow-exchange-id"];

/// [`DEFAULT_SHADOW_MARKERS`] as [`TeeConfig::shadow_markers`] takes them.
pub fn default_shadow_markers() -> Vec<String> {
    DEFAULT_SHADOW_MARKERS.map(String::from).to_vec()
}

/// The tee proxy service. Cheap to clone; clones share their connections to the control,
/// while [`TeeProxy::for_thread`] gives a serving thread connections of its own.
#[derive(Clone)]
pub struct TeeProxy {
    inner: Arc<Inner>,
    /// The hyper path's connections to the control (HTTP/2 clients and other fallbacks).
    upstream: Arc<Upstream<UpstreamBody>>,
    /// The HTTP/1.1 relay's connections to the control.
    relay_upstream: Arc<relay::RelayUpstream>,
    /// Looked up again by [`TeeProxy::for_thread`], when the recorder is surely installed.
    metrics: Arc<telemetry::TapMetrics>,
}

struct Inner {
    config: TeeConfig,
    /// Where the control is, and how to speak to it (TCP or TLS).
    endpoint: Endpoint,
    host_header: HeaderValue,
    sink: Arc<dyn ExchangeSink>,
    /// Decides from the request head whether to copy at all; `None` copies everything.
    sampler: Option<sample::Sampler>,
}

/// The body the tap sends to the control: the client's streamed body, or none.
type UpstreamBody = Either<TeeBody<Incoming>, http_body_util::Empty<Bytes>>;
/// What the tap answers with: the control's streamed body, or a short error of its own.
pub type TapBody = Either<TeeBody<Incoming>, Full<Bytes>>;

/// What is known of a copied exchange once its request head was read.
struct ExchangeStart {
    id: uuid::Uuid,
    captured_at_ms: u64,
    method: String,
    uri: String,
    request_headers: shadowdiff_model::Headers,
    sent_at: Instant,
    experiment: String,
    sample_rate: f64,
}

impl Inner {
    fn is_shadow_marker(&self, name: &str) -> bool {
        self.config
            .shadow_markers
            .iter()
            .any(|marker| marker.eq_ignore_ascii_case(name))
    }

    fn start_exchange(
        &self,
        method: &str,
        uri: &str,
        request_headers: shadowdiff_model::Headers,
    ) -> ExchangeStart {
        let captured_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        ExchangeStart {
            // A UUIDv7 from the clock read above and 74 random bits: `now_v7` reads the clock
            // again and keeps a shared monotonic counter, which the id does not need.
            id: uuid::Builder::from_unix_timestamp_millis(captured_at_ms, &rand::random())
                .into_uuid(),
            captured_at_ms,
            method: method.to_string(),
            uri: uri.to_string(),
            request_headers,
            sent_at: Instant::now(),
            experiment: self.config.experiment.clone(),
            sample_rate: self.sampler.as_ref().map_or(1.0, sample::Sampler::rate),
        }
    }
}

/// An exchange whose bodies are still streaming through hyper.
struct Pending {
    start: ExchangeStart,
    request_body: Mutex<Option<Captured>>,
}

impl TeeProxy {
    /// A tap in front of `config.control`, handing its copies to `sink`.
    pub fn new(config: TeeConfig, sink: Arc<dyn ExchangeSink>) -> Result<Self, CaptureError> {
        let bad = || CaptureError::BadControl(config.control.to_string());
        let endpoint = Endpoint::new(&config.control, &config.tls).map_err(|_| bad())?;
        let authority: &Authority = config.control.authority().ok_or_else(bad)?;
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        telemetry::describe();
        Ok(Self {
            upstream: Arc::new(Upstream::new(endpoint.clone())),
            relay_upstream: Arc::new(relay::RelayUpstream::new(endpoint.clone())),
            metrics: Arc::new(telemetry::TapMetrics::new()),
            inner: Arc::new(Inner {
                config,
                endpoint,
                host_header,
                sink,
                sampler: None,
            }),
        })
    }

    /// The same proxy with an upstream pool of its own, for a thread of
    /// [`shadowdiff_net::server::serve_connections_on_threads`]: its connections to the control
    /// are then opened, used and driven on that thread only.
    pub fn for_thread(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            upstream: Arc::new(Upstream::new(self.inner.endpoint.clone())),
            relay_upstream: Arc::new(relay::RelayUpstream::new(self.inner.endpoint.clone())),
            metrics: Arc::new(telemetry::TapMetrics::new()),
        }
    }

    /// Copies only the exchanges `sampler` keeps; the others are proxied without a copy.
    /// Call before the proxy is cloned.
    pub fn with_sampler(mut self, sampler: sample::Sampler) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.sampler = (!sampler.keeps_everything()).then_some(sampler);
        }
        self
    }

    /// Serves one client request.
    pub async fn handle(&self, req: Request<Incoming>) -> Result<Response<TapBody>, Infallible> {
        let inner = &self.inner;
        let (mut parts, body) = req.into_parts();
        // A request-target without a path (hyper reads `GET 9!a` as authority-form) would be
        // forwarded as `/`, a request the client did not send; refuse it (found by the
        // relay_differential fuzz target).
        if parts.uri.path_and_query().is_none() {
            self.metrics
                .refused(Refusal::MalformedHead, "request-target without a path");
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "bad request-target",
            ));
        }
        // Sampling and filters look at the head only, so sampled-out bodies are never copied.
        let copy = match &inner.sampler {
            Some(s) => s.keep(&parts.method, &parts.uri, &parts.headers),
            None => true,
        };
        let body_limit = if copy { inner.config.body_limit } else { 0 };
        // `PathAndQuery` is reference-counted: the upstream URI shares it, no copy.
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        // Sampled out: no exchange at all, so no id, clock reads, strings or headers to make.
        let pending = copy.then(|| {
            Arc::new(Pending {
                start: inner.start_exchange(
                    parts.method.as_str(),
                    path_and_query.as_str(),
                    headers_from_http(&parts.headers),
                ),
                request_body: Mutex::new(None),
            })
        });

        // Origin-form for the control's HTTP/1.1 connection: the path and query alone.
        let client_authority = parts.uri.authority().cloned();
        parts.uri = Uri::from(path_and_query);
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        // The tap answers `Expect: 100-continue` itself (hyper does, as the relay does): the
        // control never sees it, or it could wait for a body nobody will send. The property
        // test found an HTTP/1.0 PUT with Expect reaching the control unanswered.
        parts.headers.remove(http::header::EXPECT);
        for marker in &inner.config.shadow_markers {
            parts.headers.remove(marker.as_str());
        }
        if !inner.config.preserve_host {
            parts
                .headers
                .insert(http::header::HOST, inner.host_header.clone());
        } else if !parts.headers.contains_key(http::header::HOST) {
            // HTTP/2 clients name the host in `:authority`, which HTTP/1.1 carries as Host.
            let host = client_authority
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .unwrap_or_else(|| inner.host_header.clone());
            parts.headers.insert(http::header::HOST, host);
        }

        // A body that is known to be empty is never polled by the client; record it directly.
        let upstream_body = if hyper::body::Body::is_end_stream(&body) {
            if let Some(p) = &pending {
                set_request_body(
                    p,
                    Captured {
                        complete: true,
                        ..Captured::default()
                    },
                );
            }
            Either::Right(http_body_util::Empty::new())
        } else {
            let slot = pending.clone();
            Either::Left(TeeBody::new(body, body_limit, move |c| {
                if let Some(p) = slot {
                    set_request_body(&p, c)
                }
            }))
        };
        let exchange_id = || {
            pending
                .as_ref()
                .map(|p| p.start.id.to_string())
                .unwrap_or_default()
        };

        let sent = self
            .upstream
            .send(Request::from_parts(parts, upstream_body));
        let (response, connection) = match tokio::time::timeout(inner.config.control_timeout, sent)
            .await
        {
            Ok(Ok(r)) => r,
            // The client's body broke off (or was malformed): the client's fault, not the
            // control's, as the relay sees it too (no control error is counted).
            Ok(Err(error)) if error.is_request_body() => {
                tracing::debug!(exchange_id = exchange_id(), %error, "Client request body failed.");
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "request body incomplete",
                ));
            }
            Ok(Err(error)) => {
                self.metrics.control_error();
                tracing::warn!(exchange_id = exchange_id(), %error, "Control request failed.");
                return Ok(error_response(
                    StatusCode::BAD_GATEWAY,
                    "control unreachable",
                ));
            }
            Err(_) => {
                self.metrics.control_error();
                tracing::warn!(
                    exchange_id = exchange_id(),
                    "Control did not answer in time."
                );
                return Ok(error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "control timed out",
                ));
            }
        };

        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let status = parts.status.as_u16();
        let response_headers = pending
            .as_ref()
            .map(|_| headers_from_http(&parts.headers))
            .unwrap_or_default();
        let sink = inner.sink.clone();
        let upstream = self.upstream.clone();
        let metrics = self.metrics.clone();
        let tee = TeeBody::new(body, body_limit, move |captured| {
            // Read to the end: the connection is free for the next request.
            if captured.complete {
                upstream.give_back(connection);
            }
            if let Some(pending) = pending {
                finish_exchange(
                    pending,
                    status,
                    response_headers,
                    captured,
                    sink.as_ref(),
                    &metrics,
                );
            }
        });
        Ok(Response::from_parts(parts, Either::Left(tee)))
    }
}

impl hyper::service::Service<Request<Incoming>> for TeeProxy {
    type Response = Response<TapBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(req).await })
    }
}

/// The tee's connections: HTTP/1.1 through [`relay`], everything else through hyper.
impl shadowdiff_net::server::ConnectionHandler for TeeProxy {
    fn handle(
        &self,
        stream: tokio::net::TcpStream,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.clone().serve_connection(stream, stop)
    }

    fn max_connections(&self) -> Option<usize> {
        Some(self.inner.config.limits.max_connections)
    }

    /// Answers 503 without waiting (a full socket buffer just loses the answer) and closes.
    fn over_limit(&self, stream: tokio::net::TcpStream) {
        self.metrics
            .refused(Refusal::ConnectionLimit, "connection limit reached");
        let _ = stream.try_write(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 27\r\nconnection: close\r\n\r\ntap at its connection limit",
        );
    }
}

fn set_request_body(pending: &Pending, captured: Captured) {
    if let Ok(mut slot) = pending.request_body.lock() {
        *slot = Some(captured);
    }
}

fn to_body(c: Captured) -> Body {
    let truncated = c.truncated();
    Body::partial(c.bytes, c.full_len, truncated)
}

/// Called when the control's response body ended (or was dropped): hand the copy to the sink.
fn finish_exchange(
    pending: Arc<Pending>,
    status: u16,
    headers: shadowdiff_model::Headers,
    response: Captured,
    sink: &dyn ExchangeSink,
    metrics: &telemetry::TapMetrics,
) {
    if !response.complete {
        metrics.dropped(DropReason::Incomplete);
        return;
    }
    // The request body's tee is usually gone by now: move the strings instead of copying them.
    let (start, request_body) = match Arc::try_unwrap(pending) {
        Ok(p) => (p.start, p.request_body.into_inner().ok().flatten()),
        Err(p) => (
            ExchangeStart {
                method: p.start.method.clone(),
                uri: p.start.uri.clone(),
                request_headers: p.start.request_headers.clone(),
                experiment: p.start.experiment.clone(),
                ..p.start
            },
            p.request_body.lock().ok().and_then(|mut s| s.take()),
        ),
    };
    // No request body seen: the control answered before reading the whole request body.
    let request_body = request_body.unwrap_or_default();
    offer_exchange(
        start,
        request_body,
        status,
        headers,
        response,
        sink,
        metrics,
    );
}

/// Builds the exchange from its parts and offers it to the sink, counting the outcome.
fn offer_exchange(
    start: ExchangeStart,
    request_body: Captured,
    status: u16,
    headers: shadowdiff_model::Headers,
    response: Captured,
    sink: &dyn ExchangeSink,
    metrics: &telemetry::TapMetrics,
) {
    let latency_us = start.sent_at.elapsed().as_micros() as u64;
    let id = start.id;
    let exchange = Exchange {
        schema_version: SCHEMA_VERSION,
        id: id.to_string(),
        captured_at_ms: start.captured_at_ms,
        source: "tee".to_string(),
        experiment: start.experiment,
        request: HttpRequest {
            method: start.method,
            uri: start.uri,
            headers: start.request_headers,
            body: to_body(request_body),
        },
        control: Some(HttpResponse {
            status,
            headers,
            body: to_body(response),
            latency_us,
        }),
        redactions: Vec::new(),
        sample_rate: start.sample_rate,
    };
    metrics.control_latency(latency_us);
    match sink.offer(exchange) {
        Ok(()) => metrics.captured(),
        Err(OfferError::Full) => metrics.dropped(DropReason::QueueFull),
        Err(OfferError::Closed) => metrics.dropped(DropReason::Closed),
        Err(OfferError::Rejected(why)) => {
            tracing::debug!(exchange_id = %id, why, "Sink rejected an exchange.");
            metrics.dropped(DropReason::Rejected)
        }
    }
}

fn error_response(status: StatusCode, message: &'static str) -> Response<TapBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        message.as_bytes(),
    ))));
    *r.status_mut() = status;
    r
}

/// Collects a body to bytes; a convenience for tests and small clients.
pub async fn collect_body<B>(body: B) -> Result<Bytes, B::Error>
where
    B: hyper::body::Body<Data = Bytes>,
{
    Ok(body.collect().await?.to_bytes())
}
