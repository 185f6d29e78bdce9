//! Kafka transport for shadowdiff.
//!
//! - [`ExchangeProducer`]: the capture side. Idempotent, `acks=all`, keyed by exchange id,
//!   never blocks the caller: a full local queue is an error the caller counts as a drop.
//!   Exchanges larger than `message.max.bytes` are re-encoded with truncated bodies.
//! - [`ResultProducer`]: the replayer side. `send` resolves once the broker acknowledged.
//! - [`RecordConsumer`]: a consumer-group member that yields `(record, Delivery)` pairs.
//!   Offsets are stored only when [`Delivery::ack`] is called (Vector's pattern:
//!   `enable.auto.commit=true`, `enable.auto.offset.store=false`), so a record is redelivered
//!   unless the next stage accepted it. Undecodable records go to a dead-letter topic and never
//!   stall their partition.
//! - [`ensure_topics`]: creates topics through the admin API.
//!
//! Metrics (via the `metrics` facade) are defined once each in [`events`].

mod admin;
mod config;
mod consumer;
pub mod events;
mod producer;

pub use admin::ensure_topics;
pub use config::{dead_letter_topic, AutoOffsetReset, Compression, ConsumerConfig, ProducerConfig};
pub use consumer::{Delivery, PartitionProgress, RecordConsumer};
pub use producer::{fit_exchange, ExchangeProducer, ResultProducer};

pub use rdkafka::error::KafkaError;

/// Record header carrying the envelope's schema version.
pub const HEADER_SCHEMA_VERSION: &str = "schema_version";
/// Record header carrying the request method.
pub const HEADER_METHOD: &str = "method";
/// Record header carrying the route template (or the raw path when no route is known).
pub const HEADER_ROUTE: &str = "route";
/// Record header the dead-letter topic adds: why the record could not be decoded.
pub const HEADER_DLQ_ERROR: &str = "dlq_error";

/// Errors creating clients, subscribing, administering topics, consuming.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// librdkafka refused the client configuration.
    #[error("cannot create the Kafka client: {0}")]
    Create(#[source] KafkaError),
    /// The consumer could not subscribe to its topic.
    #[error("cannot subscribe to topic {topic}: {source}")]
    Subscribe {
        /// The configured topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The broker refused to create a topic (other than because it exists already).
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic {
        /// The topic asked for.
        topic: String,
        /// The broker's error, as text.
        reason: String,
    },
    /// The admin request itself failed (broker unreachable, timeout).
    #[error("Kafka admin request failed: {0}")]
    Admin(#[source] KafkaError),
    /// A fatal consumer error (transient ones are retried), or the assignment could not be read.
    #[error("cannot receive from Kafka: {0}")]
    Receive(#[source] KafkaError),
    /// Committing the stored offsets failed.
    #[error("cannot commit offsets: {0}")]
    Commit(#[source] KafkaError),
}

/// Why a record was not handed to Kafka or not acknowledged by it.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The producer's local queue is full; the caller counts the record as dropped.
    #[error("the producer queue is full")]
    QueueFull,
    /// Even with its bodies dropped the record is larger than `message.max.bytes`.
    #[error(
        "record of {size} bytes does not fit in message.max.bytes = {max} even without bodies"
    )]
    TooLarge {
        /// Encoded size of the record, in bytes.
        size: usize,
        /// The producer's `message_max_bytes`.
        max: usize,
    },
    /// librdkafka refused the record, the broker did not acknowledge it, or a flush timed out.
    #[error("Kafka rejected the record: {0}")]
    Kafka(#[source] KafkaError),
}
