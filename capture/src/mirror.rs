//! The mirror receiver: takes requests that a load balancer mirrors (nginx `mirror`, Envoy
//! `request_mirror_policies`, Istio `mirror`), answers `202 Accepted` with an empty body as soon
//! as the request is read (it never waits on the replica, the queue or the candidates), and
//! produces request-only exchanges (no control response: the replayer asks a control replica).

use crate::sample::Sampler;
use crate::{telemetry, DropReason, ExchangeSink, OfferError};
use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use shadowdiff_model::{headers_from_http, Body, Exchange, HttpRequest, SCHEMA_VERSION};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Mirror receiver settings.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Request bodies are kept up to this many bytes, then marked truncated.
    pub body_limit: usize,
    /// Stamped on every exchange.
    pub experiment: String,
    /// Time a mirrored request body has to arrive; slower ones are dropped.
    pub body_timeout: Duration,
}

/// The mirror receiver service. Cheap to clone.
#[derive(Clone)]
pub struct MirrorReceiver {
    inner: Arc<Inner>,
}

struct Inner {
    config: MirrorConfig,
    sink: Arc<dyn ExchangeSink>,
    sampler: Option<Sampler>,
}

impl MirrorReceiver {
    /// A receiver handing every mirrored request to `sink`.
    pub fn new(config: MirrorConfig, sink: Arc<dyn ExchangeSink>) -> Self {
        telemetry::describe();
        Self {
            inner: Arc::new(Inner {
                config,
                sink,
                sampler: None,
            }),
        }
    }

    /// Keeps only the requests `sampler` keeps.
    pub fn with_sampler(
        config: MirrorConfig,
        sink: Arc<dyn ExchangeSink>,
        sampler: Sampler,
    ) -> Self {
        telemetry::describe();
        let sampler = (!sampler.keeps_everything()).then_some(sampler);
        Self {
            inner: Arc::new(Inner {
                config,
                sink,
                sampler,
            }),
        }
    }

    /// Reads the request body (bounded by `body_limit` and `body_timeout`), offers the exchange
    /// without waiting, and answers 202. The offer happens inside the request, not in a detached
    /// task, so a graceful shutdown (which waits for in-flight requests) never closes the queue
    /// under an exchange that was already accepted.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let inner = &self.inner;
        let (parts, body) = req.into_parts();
        let keep = match &inner.sampler {
            Some(s) => s.keep(&parts.method, &parts.uri, &parts.headers),
            None => true,
        };
        if keep {
            let captured_at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let limit = inner.config.body_limit;
            match tokio::time::timeout(inner.config.body_timeout, read_bounded(body, limit)).await {
                Ok(Some(body)) => {
                    let exchange = exchange_of(inner, &parts, body, captured_at_ms);
                    offer(inner.sink.as_ref(), exchange);
                }
                _ => telemetry::dropped(DropReason::Incomplete),
            }
        }
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::ACCEPTED;
        Ok(response)
    }
}

fn exchange_of(
    inner: &Inner,
    parts: &http::request::Parts,
    body: Body,
    captured_at_ms: u64,
) -> Exchange {
    let mut headers = headers_from_http(&parts.headers);
    for (name, value) in headers.iter_mut() {
        if name == "host" {
            *value = strip_shadow_suffix(value).to_string();
        }
    }
    let uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        captured_at_ms,
        source: "mirror".to_string(),
        experiment: inner.config.experiment.clone(),
        request: HttpRequest {
            method: parts.method.as_str().to_string(),
            uri,
            headers,
            body,
        },
        control: None,
        redactions: Vec::new(),
        sample_rate: inner.sampler.as_ref().map_or(1.0, Sampler::rate),
    }
}

pub(crate) fn offer(sink: &dyn ExchangeSink, exchange: Exchange) {
    let id = exchange.id.clone();
    match sink.offer(exchange) {
        Ok(()) => telemetry::captured(),
        Err(OfferError::Full) => telemetry::dropped(DropReason::QueueFull),
        Err(OfferError::Closed) => telemetry::dropped(DropReason::Closed),
        Err(OfferError::Rejected(why)) => {
            tracing::debug!(exchange_id = %id, why, "Sink rejected an exchange.");
            telemetry::dropped(DropReason::Rejected)
        }
    }
}

/// Reads a body, keeping at most `limit` bytes; `None` when the body failed midway.
async fn read_bounded(mut body: Incoming, limit: usize) -> Option<Body> {
    let mut kept = BytesMut::new();
    let mut full_len: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Some(data) = frame.data_ref() {
            full_len += data.len() as u64;
            let room = limit.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    let truncated = full_len > kept.len() as u64;
    Some(Body::partial(kept.freeze(), full_len, truncated))
}

/// Istio and Envoy mark mirrored traffic by appending `-shadow` to the Host, either after the
/// whole authority (`api:8080-shadow`, older Envoy) or to the host name (`api-shadow:8080`).
pub fn strip_shadow_suffix(host: &str) -> std::borrow::Cow<'_, str> {
    if let Some(h) = host.strip_suffix("-shadow") {
        return h.into();
    }
    if let Some((name, port)) = host.rsplit_once(':') {
        if let Some(name) = name.strip_suffix("-shadow") {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                return format!("{name}:{port}").into();
            }
        }
    }
    host.into()
}

impl hyper::service::Service<Request<Incoming>> for MirrorReceiver {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_suffix_is_stripped_in_both_forms() {
        assert_eq!(strip_shadow_suffix("api.svc-shadow"), "api.svc");
        assert_eq!(strip_shadow_suffix("api:8080-shadow"), "api:8080");
        assert_eq!(strip_shadow_suffix("api-shadow:8080"), "api:8080");
        assert_eq!(strip_shadow_suffix("api:8080"), "api:8080");
        assert_eq!(strip_shadow_suffix("shadow.example"), "shadow.example");
    }
}
