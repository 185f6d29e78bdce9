//! Producers: exchanges from capture (fire and forget, never blocking) and replay results
//! (awaited until acknowledged).

use crate::config::ProducerConfig;
use crate::{events, Error, ProduceError, HEADER_METHOD, HEADER_ROUTE, HEADER_SCHEMA_VERSION};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use shadowdiff_model::{encode, infer_route, Body, Exchange, ReplayResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes kept free for the record's key, headers and framing when fitting an exchange.
const FRAMING_RESERVE: usize = 512;

fn headers(schema_version: u32, method: &str, route: &str) -> OwnedHeaders {
    let version = schema_version.to_string();
    OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: HEADER_SCHEMA_VERSION,
            value: Some(version.as_bytes()),
        })
        .insert(Header {
            key: HEADER_METHOD,
            value: Some(method.as_bytes()),
        })
        .insert(Header {
            key: HEADER_ROUTE,
            value: Some(route.as_bytes()),
        })
}

/// Encodes `exchange` so that the record (payload plus `overhead` bytes of key and headers) fits
/// in `max_bytes`. When it does not, the bodies are cut (largest first, `truncated` set,
/// `full_len` kept) and the exchange re-encoded, a bounded number of times.
///
/// Returns the payload and whether bodies were truncated.
pub fn fit_exchange(
    exchange: &Exchange,
    max_bytes: usize,
    overhead: usize,
) -> Result<(Vec<u8>, bool), ProduceError> {
    let budget = max_bytes.saturating_sub(overhead + FRAMING_RESERVE);
    let payload = encode(exchange);
    if payload.len() <= budget {
        return Ok((payload, false));
    }
    let mut fitted = exchange.clone();
    let mut size = payload.len();
    // Each round removes at least the excess (bodies are base64: 4 bytes per 3), so a few rounds
    // suffice; the bound only guards against surprises.
    for _ in 0..16 {
        let excess = size.saturating_sub(budget);
        let cut = excess.div_ceil(4) * 3 + 64;
        let request_len = fitted.request.body.bytes.len();
        let control_len = fitted.control.as_ref().map_or(0, |c| c.body.bytes.len());
        if request_len == 0 && control_len == 0 {
            break;
        }
        if request_len >= control_len {
            truncate_body(&mut fitted.request.body, cut);
        } else if let Some(control) = fitted.control.as_mut() {
            truncate_body(&mut control.body, cut);
        }
        let payload = encode(&fitted);
        size = payload.len();
        if size <= budget {
            return Ok((payload, true));
        }
    }
    Err(ProduceError::TooLarge {
        size,
        max: max_bytes,
    })
}

/// Removes `cut` bytes (at least) from the end of `body`, keeping what the full body was.
fn truncate_body(body: &mut Body, cut: usize) {
    let keep = body.bytes.len().saturating_sub(cut);
    *body = Body::partial(body.bytes.slice(..keep), body.full_len, true);
}

/// Counts the deliveries the background thread reports.
pub(crate) struct CaptureContext {
    topic: String,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for CaptureContext {}

impl ProducerContext for CaptureContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                events::produced(&self.topic);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                events::produce_error(&self.topic, error);
            }
        }
    }
}

/// Producer of captured exchanges. `try_send` never blocks; deliveries are confirmed in the
/// background and failures counted in `shadowdiff_kafka_produce_errors_total`.
pub struct ExchangeProducer {
    producer: ThreadedProducer<CaptureContext>,
    topic: String,
    message_max_bytes: usize,
}

impl ExchangeProducer {
    /// Creates the producer; it connects to the brokers in the background.
    pub fn new(config: &ProducerConfig) -> Result<Self, Error> {
        let producer = config
            .client_config()
            .create_with_context(CaptureContext {
                topic: config.topic.clone(),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            })
            .map_err(Error::Create)?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            message_max_bytes: config.message_max_bytes,
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues `exchange` keyed by its id, with `schema_version`, `method` and `route` headers.
    /// Returns at once; [`ProduceError::QueueFull`] means the record was dropped.
    pub fn try_send(&self, exchange: &Exchange, route: &str) -> Result<(), ProduceError> {
        let headers = headers(exchange.schema_version, &exchange.request.method, route);
        let overhead = exchange.id.len()
            + exchange.request.method.len()
            + route.len()
            + HEADER_SCHEMA_VERSION.len()
            + HEADER_METHOD.len()
            + HEADER_ROUTE.len()
            + 16;
        let (payload, truncated) = fit_exchange(exchange, self.message_max_bytes, overhead)
            .inspect_err(|_| events::produce_dropped(&self.topic, "too_large"))?;
        if truncated {
            events::produce_truncated(
                &self.topic,
                &exchange.id,
                encode(exchange).len(),
                payload.len(),
            );
        }
        let record = BaseRecord::to(&self.topic)
            .key(exchange.id.as_str())
            .payload(&payload)
            .headers(headers);
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                events::produce_dropped(&self.topic, "queue_full");
                Err(ProduceError::QueueFull)
            }
            Err((error, _)) => {
                events::produce_dropped(&self.topic, "rejected");
                Err(ProduceError::Kafka(error))
            }
        }
    }

    /// Records the broker acknowledged and records it finally refused, since creation.
    pub fn delivery_counts(&self) -> (u64, u64) {
        let ctx = self.producer.context();
        (
            ctx.delivered.load(Ordering::Relaxed),
            ctx.failed.load(Ordering::Relaxed),
        )
    }

    /// Records queued or in flight.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits up to `timeout` for every queued record to be acknowledged (call on shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer.flush(timeout).map_err(ProduceError::Kafka)
    }
}

/// Producer of replay results; `send` resolves when the broker acknowledged the record.
pub struct ResultProducer {
    producer: FutureProducer,
    topic: String,
    message_max_bytes: usize,
}

impl ResultProducer {
    /// Creates the producer; it connects to the brokers in the background.
    pub fn new(config: &ProducerConfig) -> Result<Self, Error> {
        let producer = config.client_config().create().map_err(Error::Create)?;
        Ok(Self {
            producer,
            topic: config.topic.clone(),
            message_max_bytes: config.message_max_bytes,
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `result` keyed by its exchange id and waits for the acknowledgement. The `route`
    /// header is inferred from the request path ([`shadowdiff_model::infer_route`]).
    pub async fn send(&self, result: &ReplayResult) -> Result<(), ProduceError> {
        let uri = &result.exchange.request.uri;
        let path = uri.split(['?', '#']).next().unwrap_or(uri);
        self.send_with_route(result, &infer_route(path)).await
    }

    /// Like [`ResultProducer::send`], with the route template given. When the local queue is
    /// full, waits for room (up to 30 s) instead of failing.
    pub async fn send_with_route(
        &self,
        result: &ReplayResult,
        route: &str,
    ) -> Result<(), ProduceError> {
        let payload = encode(result);
        if payload.len() + FRAMING_RESERVE > self.message_max_bytes {
            events::produce_dropped(&self.topic, "too_large");
            return Err(ProduceError::TooLarge {
                size: payload.len(),
                max: self.message_max_bytes,
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(result.exchange.id.as_str())
            .payload(&payload)
            .headers(headers(
                result.schema_version,
                &result.exchange.request.method,
                route,
            ));
        match self.producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => {
                events::produced(&self.topic);
                Ok(())
            }
            Err((error, message)) => {
                events::produce_error(&self.topic, &error);
                tracing::debug!(key = ?message.key().map(String::from_utf8_lossy), "Result not delivered.");
                Err(ProduceError::Kafka(error))
            }
        }
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer.flush(timeout).map_err(ProduceError::Kafka)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{HttpRequest, HttpResponse, SCHEMA_VERSION};

    fn exchange(request_body: usize, response_body: usize) -> Exchange {
        Exchange {
            schema_version: SCHEMA_VERSION,
            id: "0190-test".into(),
            captured_at_ms: 1,
            source: "tee".into(),
            experiment: "e".into(),
            request: HttpRequest {
                method: "POST".into(),
                uri: "/upload".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: Body::complete(vec![b'a'; request_body]),
            },
            control: Some(HttpResponse {
                status: 200,
                headers: vec![],
                body: Body::complete(vec![b'b'; response_body]),
                latency_us: 10,
            }),
            redactions: vec![],
            sample_rate: 1.0,
        }
    }

    #[test]
    fn small_exchanges_are_untouched() {
        let ex = exchange(100, 100);
        let (payload, truncated) = fit_exchange(&ex, 1_000_000, 64).expect("fits");
        assert!(!truncated);
        assert_eq!(payload, encode(&ex));
    }

    #[test]
    fn large_bodies_are_cut_to_fit_and_keep_their_length() {
        for (req, resp) in [(3_000_000, 10), (10, 3_000_000), (900_000, 900_000)] {
            let ex = exchange(req, resp);
            let (payload, truncated) = fit_exchange(&ex, 1_000_000, 64).expect("fits");
            assert!(truncated);
            assert!(payload.len() <= 1_000_000 - 64 - FRAMING_RESERVE);
            let back: Exchange = shadowdiff_model::decode(&payload).expect("decodes");
            assert_eq!(back.request.body.full_len, req as u64);
            let control = back.control.expect("control kept");
            assert_eq!(control.body.full_len, resp as u64);
            assert!(back.request.body.truncated || control.body.truncated);
        }
    }

    #[test]
    fn the_local_queue_is_bounded_by_bytes_too() {
        // Nothing listens on port 1: every record stays queued.
        let mut config = crate::ProducerConfig::new("127.0.0.1:1", "t");
        config.queue_max_kbytes = 64;
        let producer = ExchangeProducer::new(&config).expect("producer");
        // About 16 KiB encoded (base64 of two 6 KB bodies): 64 KiB hold a handful, not 100,000.
        let ex = exchange(6_000, 6_000);
        let accepted = (0..1_000)
            .take_while(|_| producer.try_send(&ex, "/upload").is_ok())
            .count();
        assert!((1..10).contains(&accepted), "accepted {accepted}");
        assert!(matches!(
            producer.try_send(&ex, "/upload"),
            Err(ProduceError::QueueFull)
        ));
    }

    #[test]
    fn a_full_queue_is_an_immediate_error_not_a_wait() {
        // Nothing listens on port 1: every record stays queued.
        let mut config = crate::ProducerConfig::new("127.0.0.1:1", "t");
        config.queue_max_messages = 3;
        let producer = ExchangeProducer::new(&config).expect("producer");
        let ex = exchange(10, 10);
        let started = std::time::Instant::now();
        for _ in 0..3 {
            producer
                .try_send(&ex, "/upload")
                .expect("room in the queue");
        }
        assert!(matches!(
            producer.try_send(&ex, "/upload"),
            Err(ProduceError::QueueFull)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        // librdkafka counts its own internal requests too; at least our three are queued.
        assert!(producer.in_flight() >= 3, "{}", producer.in_flight());
    }

    #[test]
    fn huge_headers_fail_instead_of_looping() {
        let mut ex = exchange(10, 10);
        ex.request
            .headers
            .push(("x-big".into(), "h".repeat(2_000_000)));
        assert!(matches!(
            fit_exchange(&ex, 1_000_000, 64),
            Err(ProduceError::TooLarge { .. })
        ));
    }
}
