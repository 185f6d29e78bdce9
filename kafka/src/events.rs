//! Internal events: one function per event that logs and bumps its metric, so each metric has a
//! single definition.

use metrics::{counter, gauge};

/// A record the producer accepted was not acknowledged by the broker.
pub const PRODUCE_ERRORS: &str = "shadowdiff_kafka_produce_errors_total";
/// A record was not queued because the local queue was full.
pub const PRODUCE_DROPPED: &str = "shadowdiff_kafka_produce_dropped_total";
/// An exchange was re-encoded with truncated bodies to fit `message.max.bytes`.
pub const PRODUCE_TRUNCATED: &str = "shadowdiff_kafka_produce_truncated_total";
/// Records acknowledged by the broker.
pub const PRODUCED: &str = "shadowdiff_kafka_produced_total";
/// Records that could not be decoded (malformed, unknown schema version).
pub const CONSUME_INVALID: &str = "shadowdiff_kafka_consume_invalid_total";
/// Records written to a dead-letter topic.
pub const DEAD_LETTERED: &str = "shadowdiff_kafka_dead_lettered_total";
/// Transient errors while consuming.
pub const CONSUME_ERRORS: &str = "shadowdiff_kafka_consume_errors_total";
/// Messages between the stored offset and the partition's end, per topic and partition.
pub const CONSUMER_LAG: &str = "shadowdiff_kafka_consumer_lag";

pub(crate) fn produce_error(topic: &str, error: &dyn std::fmt::Display) {
    tracing::warn!(topic, %error, "Kafka did not acknowledge a record.");
    counter!(PRODUCE_ERRORS, "topic" => topic.to_string()).increment(1);
}

pub(crate) fn produced(topic: &str) {
    counter!(PRODUCED, "topic" => topic.to_string()).increment(1);
}

pub(crate) fn produce_dropped(topic: &str, reason: &'static str) {
    tracing::debug!(topic, reason, "Record dropped before reaching Kafka.");
    counter!(PRODUCE_DROPPED, "topic" => topic.to_string(), "reason" => reason).increment(1);
}

pub(crate) fn produce_truncated(topic: &str, id: &str, encoded: usize, fitted: usize) {
    tracing::debug!(
        topic,
        exchange_id = id,
        encoded,
        fitted,
        "Exchange bodies truncated to fit message.max.bytes."
    );
    counter!(PRODUCE_TRUNCATED, "topic" => topic.to_string()).increment(1);
}

pub(crate) fn consume_invalid(
    topic: &str,
    partition: i32,
    offset: i64,
    error: &dyn std::fmt::Display,
) {
    tracing::warn!(topic, partition, offset, %error, "Skipping a record that cannot be decoded.");
    counter!(CONSUME_INVALID, "topic" => topic.to_string()).increment(1);
}

pub(crate) fn dead_lettered(topic: &str, dlq: &str) {
    counter!(DEAD_LETTERED, "topic" => topic.to_string(), "dlq" => dlq.to_string()).increment(1);
}

pub(crate) fn consume_error(topic: &str, error: &dyn std::fmt::Display) {
    tracing::warn!(topic, %error, "Kafka consumer error; librdkafka retries.");
    counter!(CONSUME_ERRORS, "topic" => topic.to_string()).increment(1);
}

pub(crate) fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!(CONSUMER_LAG, "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}
