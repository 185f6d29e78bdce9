//! Serde configuration of producers and consumers.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The dead-letter topic conventionally paired with `topic`: `<topic>.dlq`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Compression codec of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Batches are sent uncompressed.
    None,
    /// Smallest batches, most CPU.
    Gzip,
    /// Fast, lighter compression.
    Snappy,
    /// Fast and light on CPU; the default.
    #[default]
    Lz4,
}

impl Compression {
    /// The librdkafka `compression.codec` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
        }
    }
}

/// Where a consumer group without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoOffsetReset {
    /// Everything still retained in the topic.
    #[default]
    Earliest,
    /// Only records produced after the group joined.
    Latest,
}

/// A producer of exchanges (capture) or replay results (replayer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Topic the records go to.
    pub topic: String,
    /// Batch compression codec.
    #[serde(default)]
    pub compression: Compression,
    /// Largest record the producer sends (librdkafka `message.max.bytes`). Larger exchanges are
    /// re-encoded with truncated bodies.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: usize,
    /// Records the local queue holds before `try_send` reports a full queue.
    #[serde(default = "default_queue_max_messages")]
    pub queue_max_messages: u32,
    /// KiB of records the local queue holds before `try_send` reports a full queue (librdkafka
    /// `queue.buffering.max.kbytes`), so large bodies cannot grow it past a memory bound.
    #[serde(default = "default_queue_max_kbytes")]
    pub queue_max_kbytes: u32,
    /// How long the producer waits to fill a batch, in milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// How long a record may take to be acknowledged, retries included, in milliseconds.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u32,
    /// Extra librdkafka options, passed through as they are (they win over the fields above).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_message_max_bytes() -> usize {
    1_000_000
}
fn default_queue_max_messages() -> u32 {
    100_000
}
fn default_queue_max_kbytes() -> u32 {
    // librdkafka's own default (1 GiB).
    1_048_576
}
fn default_linger_ms() -> u32 {
    5
}
fn default_delivery_timeout_ms() -> u32 {
    30_000
}

impl ProducerConfig {
    /// A configuration with every default.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            compression: Compression::default(),
            message_max_bytes: default_message_max_bytes(),
            queue_max_messages: default_queue_max_messages(),
            queue_max_kbytes: default_queue_max_kbytes(),
            linger_ms: default_linger_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            librdkafka_options: BTreeMap::new(),
        }
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.codec", self.compression.as_str())
            .set("message.max.bytes", self.message_max_bytes.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_max_messages.to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                self.queue_max_kbytes.to_string(),
            )
            .set("linger.ms", self.linger_ms.to_string())
            .set("delivery.timeout.ms", self.delivery_timeout_ms.to_string());
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }
}

/// A consumer-group member reading one topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Topic to read.
    pub topic: String,
    /// Consumer group; members of one group share the topic's partitions.
    pub group_id: String,
    /// Where undecodable records go (with a `dlq_error` header); `None` only logs and counts
    /// them. The convention is `<topic>.dlq`, see [`dead_letter_topic`].
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Where the group starts when it has no committed offset.
    #[serde(default)]
    pub auto_offset_reset: AutoOffsetReset,
    /// How often stored offsets are committed, in milliseconds.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u32,
    /// How long the group waits for a silent member before rebalancing, in milliseconds.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// How often the consumer-lag gauge is refreshed, in milliseconds (0 turns it off).
    #[serde(default = "default_statistics_interval_ms")]
    pub statistics_interval_ms: u32,
    /// Longest a fetch waits at the broker for records, in milliseconds (`fetch.wait.max.ms`).
    /// Kafka answers as soon as a record is there, so on Kafka this only sets how often an idle
    /// consumer asks; some brokers (tansu) hold every fetch this long, and librdkafka's 500 ms
    /// default then bounded a consumer to about 12,000 records/s (docs/performance.md).
    #[serde(default = "default_fetch_wait_max_ms")]
    pub fetch_wait_max_ms: u32,
    /// Most bytes one fetch returns per partition (`max.partition.fetch.bytes`); librdkafka's
    /// 1 MiB default is 128 results of 8 KB. The prefetch queue stays bounded by librdkafka's
    /// `queued.max.messages.kbytes`.
    #[serde(default = "default_max_partition_fetch_bytes")]
    pub max_partition_fetch_bytes: u32,
    /// A stable name for this member (KIP-345 static membership, `group.instance.id`): a
    /// member restarted under the same name takes its partitions back at once instead of
    /// waiting out the dead one's session. Unique per replica (a StatefulSet pod name).
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Extra librdkafka options, passed through as they are (they win over the fields above).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

fn default_commit_interval_ms() -> u32 {
    1_000
}
fn default_session_timeout_ms() -> u32 {
    10_000
}
fn default_statistics_interval_ms() -> u32 {
    10_000
}
fn default_fetch_wait_max_ms() -> u32 {
    20
}
fn default_max_partition_fetch_bytes() -> u32 {
    8 << 20
}

impl ConsumerConfig {
    /// A configuration with every default and no dead-letter topic.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        topic: impl Into<String>,
        group_id: impl Into<String>,
    ) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            group_id: group_id.into(),
            dead_letter_topic: None,
            auto_offset_reset: AutoOffsetReset::default(),
            commit_interval_ms: default_commit_interval_ms(),
            session_timeout_ms: default_session_timeout_ms(),
            statistics_interval_ms: default_statistics_interval_ms(),
            fetch_wait_max_ms: default_fetch_wait_max_ms(),
            max_partition_fetch_bytes: default_max_partition_fetch_bytes(),
            group_instance_id: None,
            librdkafka_options: BTreeMap::new(),
        }
    }

    /// Sends undecodable records to `<topic>.dlq`.
    pub fn with_default_dead_letter_topic(mut self) -> Self {
        self.dead_letter_topic = Some(dead_letter_topic(&self.topic));
        self
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match self.auto_offset_reset {
                    AutoOffsetReset::Earliest => "earliest",
                    AutoOffsetReset::Latest => "latest",
                },
            )
            .set(
                "auto.commit.interval.ms",
                self.commit_interval_ms.to_string(),
            )
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            )
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set(
                "max.partition.fetch.bytes",
                self.max_partition_fetch_bytes.to_string(),
            );
        if let Some(id) = &self.group_instance_id {
            c.set("group.instance.id", id);
        }
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }

    /// Client configuration of the dead-letter producer.
    pub(crate) fn dlq_client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected_and_defaults_fill_in() {
        let c: ConsumerConfig = serde_json::from_str(
            r#"{"bootstrap_servers":"b:9092","topic":"t","group_id":"g",
                "librdkafka_options":{"fetch.min.bytes":"1"}}"#,
        )
        .expect("valid config");
        assert_eq!(c.commit_interval_ms, 1_000);
        assert_eq!(c.librdkafka_options["fetch.min.bytes"], "1");
        let err = serde_json::from_str::<ProducerConfig>(
            r#"{"bootstrap_servers":"b","topic":"t","acks":"1"}"#,
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn pass_through_options_win() {
        let mut p = ProducerConfig::new("b:1", "t");
        p.librdkafka_options.insert("linger.ms".into(), "50".into());
        assert_eq!(p.client_config().get("linger.ms"), Some("50"));
        assert_eq!(p.client_config().get("acks"), Some("all"));
        let mut c = ConsumerConfig::new("b:1", "t", "g");
        assert_eq!(c.client_config().get("fetch.wait.max.ms"), Some("20"));
        assert_eq!(
            c.client_config().get("max.partition.fetch.bytes"),
            Some("8388608")
        );
        c.librdkafka_options
            .insert("fetch.wait.max.ms".into(), "500".into());
        assert_eq!(c.client_config().get("fetch.wait.max.ms"), Some("500"));
    }
}
