//! At-least-once consumer: offsets are stored only for acknowledged records, in order.

use crate::config::ConsumerConfig;
use crate::{events, Error, HEADER_DLQ_ERROR};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Offsets handed out and not yet acknowledged, per partition.
///
/// The offset stored for a partition is the lowest one still in flight, or one past the highest
/// acknowledged when nothing is in flight: a record acknowledged out of order never lets the
/// committed offset pass a record that was not.
#[derive(Default)]
struct Tracker {
    partitions: Mutex<HashMap<(String, i32), PartitionState>>,
    generations: std::sync::atomic::AtomicU64,
}

struct PartitionState {
    generation: u64,
    in_flight: BTreeSet<i64>,
    next_after_done: Option<i64>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, i32), PartitionState>> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn begin(&self, topic: &str, partition: i32, offset: i64) -> u64 {
        let mut parts = self.lock();
        let state = parts
            .entry((topic.to_string(), partition))
            .or_insert_with(|| PartitionState {
                generation: self
                    .generations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                in_flight: BTreeSet::new(),
                next_after_done: None,
            });
        state.in_flight.insert(offset);
        state.generation
    }

    /// Marks `offset` done; returns the offset to store, if the partition is still ours.
    fn finish(&self, topic: &str, partition: i32, offset: i64, generation: u64) -> Option<i64> {
        let mut parts = self.lock();
        let state = parts.get_mut(&(topic.to_string(), partition))?;
        state.finish(offset, generation)
    }

    /// Marks many offsets done under one lock; returns, for each partition still ours, the
    /// offset to store once all of them are done.
    fn finish_many<'a>(
        &self,
        done: impl IntoIterator<Item = (&'a str, i32, i64, u64)>,
    ) -> Vec<(String, i32, i64)> {
        let mut parts = self.lock();
        let mut store: Vec<(String, i32, i64)> = Vec::new();
        for (topic, partition, offset, generation) in done {
            let Some(state) = parts.get_mut(&(topic.to_string(), partition)) else {
                continue;
            };
            let Some(next) = state.finish(offset, generation) else {
                continue;
            };
            match store
                .iter_mut()
                .find(|(t, p, _)| *p == partition && t == topic)
            {
                Some(entry) => entry.2 = next,
                None => store.push((topic.to_string(), partition, next)),
            }
        }
        store
    }

    fn forget(&self, tpl: &TopicPartitionList) {
        let mut parts = self.lock();
        for elem in tpl.elements() {
            parts.remove(&(elem.topic().to_string(), elem.partition()));
        }
    }
}

impl PartitionState {
    /// Marks `offset` done; the offset to store, unless the partition changed hands since.
    fn finish(&mut self, offset: i64, generation: u64) -> Option<i64> {
        let state = self;
        if state.generation != generation {
            return None;
        }
        state.in_flight.remove(&offset);
        state.next_after_done = Some(
            state
                .next_after_done
                .map_or(offset + 1, |n| n.max(offset + 1)),
        );
        Some(match state.in_flight.first() {
            Some(lowest) => *lowest,
            None => state.next_after_done.unwrap_or(offset + 1),
        })
    }
}

/// Commits stored offsets before partitions are taken away, and reports consumer lag.
pub(crate) struct GroupContext {
    tracker: Arc<Tracker>,
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    events::consumer_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(partitions = tpl.count(), "Committed offsets before revoke.")
                }
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => tracing::warn!(%error, "Cannot commit offsets before revoke."),
            }
            self.tracker.forget(tpl);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "Kafka partitions assigned.");
        }
    }
}

struct Shared {
    consumer: StreamConsumer<GroupContext>,
    tracker: Arc<Tracker>,
}

impl Drop for Shared {
    /// Unsubscribes before the consumer closes. A subscribe made while the group rebalances
    /// (the second half of [`RecordConsumer::rejoin`]) is postponed by librdkafka until the
    /// rebalance ends; a close in that window unsubscribes first and the postponed subscribe is
    /// applied after it, and librdkafka then aborts the whole process when it frees the group
    /// (`rd_kafka_cgrp_destroy_final`: `assert: !rkcg->rkcg_subscription`). An unsubscribe
    /// drops any postponed subscribe (and is awaited by librdkafka), so the close that follows
    /// finds nothing to re-apply. The revoke it causes commits the stored offsets, as a close
    /// does.
    fn drop(&mut self) {
        self.consumer.unsubscribe();
    }
}

impl Shared {
    /// Many records done: one tracker lock and one offset store for all of them.
    fn done_many(&self, deliveries: &[Delivery]) {
        let store = self.tracker.finish_many(
            deliveries
                .iter()
                .map(|d| (d.topic.as_str(), d.partition, d.offset, d.generation)),
        );
        if store.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::with_capacity(store.len());
        for (topic, partition, next) in &store {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(topic, partition, %error, "Cannot build offset list.");
                return;
            }
        }
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            // A partition was revoked meanwhile: its next owner reads the records again.
            tracing::debug!(partitions = store.len(), %error, "Offsets not stored.");
        }
    }

    fn done(&self, topic: &str, partition: i32, offset: i64, generation: u64) {
        let Some(next) = self.tracker.finish(topic, partition, offset, generation) else {
            return;
        };
        let mut tpl = TopicPartitionList::with_capacity(1);
        if let Err(error) = tpl.add_partition_offset(topic, partition, Offset::Offset(next)) {
            tracing::warn!(topic, partition, %error, "Cannot build offset list.");
            return;
        }
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            // The partition was revoked meanwhile: its next owner reads the record again.
            tracing::debug!(topic, partition, offset = next, %error, "Offset not stored.");
        }
    }
}

/// A handle on one consumed record. [`Delivery::ack`] stores its offset (committed within
/// `commit_interval_ms`, and before a rebalance takes the partition away). A delivery dropped
/// without `ack` is never committed: the record comes back after a restart or rebalance.
#[must_use = "a record whose delivery is not acknowledged is consumed again after a restart"]
pub struct Delivery {
    shared: Arc<Shared>,
    topic: String,
    partition: i32,
    offset: i64,
    generation: u64,
    key: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Delivery {
    /// The next stage accepted the record: let its offset be committed.
    pub fn ack(self) {
        self.shared
            .done(&self.topic, self.partition, self.offset, self.generation);
    }

    /// Acknowledges many records at once (a store writer's whole batch): one tracker lock and
    /// one offset store per consumer instead of one per record, so acknowledging a batch does
    /// not contend with the consumer's fetching a thousand times over.
    pub fn ack_all(deliveries: Vec<Delivery>) {
        let mut groups: Vec<Vec<Delivery>> = Vec::new();
        for d in deliveries {
            match groups
                .iter_mut()
                .find(|g| g.first().is_some_and(|f| Arc::ptr_eq(&f.shared, &d.shared)))
            {
                Some(group) => group.push(d),
                None => groups.push(vec![d]),
            }
        }
        for group in groups {
            if let Some(first) = group.first() {
                let shared = first.shared.clone();
                shared.done_many(&group);
            }
        }
    }

    /// The topic the record came from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The record's partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The record's key (the exchange id for shadowdiff's topics).
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The first record header called `name` (`schema_version`, `method`, `route`, …).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .finish()
    }
}

/// Where a consumer group stands on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the low watermark when it committed none).
    pub committed: i64,
    /// Records after the committed offset.
    pub lag: i64,
}

/// A consumer-group member decoding records of type `T` (checked against the schema version).
pub struct RecordConsumer<T> {
    shared: Arc<Shared>,
    topic: String,
    dead_letter: Option<(FutureProducer, String)>,
    skipped: AtomicU64,
    _record: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> RecordConsumer<T> {
    /// Joins the group and subscribes to the configured topic.
    pub fn new(config: &ConsumerConfig) -> Result<Self, Error> {
        let tracker = Arc::new(Tracker::default());
        let consumer: StreamConsumer<GroupContext> = config
            .client_config()
            .create_with_context(GroupContext {
                tracker: tracker.clone(),
            })
            .map_err(Error::Create)?;
        consumer
            .subscribe(&[config.topic.as_str()])
            .map_err(|source| Error::Subscribe {
                topic: config.topic.clone(),
                source,
            })?;
        let dead_letter = match &config.dead_letter_topic {
            Some(topic) => Some((
                config.dlq_client_config().create().map_err(Error::Create)?,
                topic.clone(),
            )),
            None => None,
        };
        Ok(Self {
            shared: Arc::new(Shared { consumer, tracker }),
            topic: config.topic.clone(),
            dead_letter,
            skipped: AtomicU64::new(0),
            _record: PhantomData,
        })
    }

    /// The topic this consumer is subscribed to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits for the next decodable record. Undecodable records (malformed, unknown schema
    /// version) are logged, counted, sent to the dead-letter topic when one is configured, and
    /// their offsets stored, so they never stall a partition. Transient broker errors are logged
    /// and retried; only fatal errors are returned.
    pub async fn recv(&self) -> Result<(T, Delivery), Error> {
        loop {
            let message = match self.shared.consumer.recv().await {
                Ok(message) => message,
                Err(error @ KafkaError::MessageConsumption(_))
                | Err(error @ KafkaError::PartitionEOF(_)) => {
                    events::consume_error(&self.topic, &error);
                    continue;
                }
                Err(error) => return Err(Error::Receive(error)),
            };
            let message = message.detach();
            let (topic, partition, offset) = (
                message.topic().to_string(),
                message.partition(),
                message.offset(),
            );
            let generation = self.shared.tracker.begin(&topic, partition, offset);
            match shadowdiff_model::decode::<T>(message.payload().unwrap_or_default()) {
                Ok(record) => {
                    let delivery = Delivery {
                        shared: self.shared.clone(),
                        topic,
                        partition,
                        offset,
                        generation,
                        key: message.key().map(<[u8]>::to_vec),
                        headers: message
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    };
                    return Ok((record, delivery));
                }
                Err(error) => {
                    events::consume_invalid(&topic, partition, offset, &error);
                    self.skipped.fetch_add(1, Ordering::Relaxed);
                    self.dead_letter(&message, &error.to_string()).await;
                    self.shared.done(&topic, partition, offset, generation);
                }
            }
        }
    }

    async fn dead_letter(&self, message: &rdkafka::message::OwnedMessage, error: &str) {
        let Some((producer, dlq)) = &self.dead_letter else {
            return;
        };
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        let source = format!(
            "{}/{}/{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        headers = headers
            .insert(Header {
                key: HEADER_DLQ_ERROR,
                value: Some(error.as_bytes()),
            })
            .insert(Header {
                key: "dlq_source",
                value: Some(source.as_bytes()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => events::dead_lettered(&self.topic, dlq),
            Err((error, _)) => {
                // Never stall the partition on a dead-letter failure: the record is logged.
                tracing::error!(topic = %self.topic, dlq, %error, source, "Cannot write to the dead-letter topic; record skipped.");
                events::produce_error(dlq, &error);
            }
        }
    }

    /// Undecodable records this consumer skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Commits the stored offsets now (call on shutdown, after the last `ack`).
    pub fn commit(&self) -> Result<(), Error> {
        match self.shared.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(error) => Err(Error::Commit(error)),
        }
    }

    /// Records of the topic the group has not committed yet: high watermarks minus the group's
    /// committed offsets, summed over the partitions.
    pub fn group_lag(&self, timeout: std::time::Duration) -> Result<i64, Error> {
        Ok(self.group_progress(timeout)?.iter().map(|p| p.lag).sum())
    }

    /// For each partition of the topic: the group's committed offset and its lag (what is
    /// still to be committed), whoever owns the partition.
    pub fn group_progress(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<PartitionProgress>, Error> {
        let consumer = &self.shared.consumer;
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(Error::Receive)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for p in &partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let committed = consumer
            .committed_offsets(tpl, timeout)
            .map_err(Error::Receive)?;
        let mut out = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, p, timeout)
                .map_err(Error::Receive)?;
            let done = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => low,
            };
            out.push(PartitionProgress {
                partition: p,
                committed: done,
                lag: (high - done).max(0),
            });
        }
        Ok(out)
    }

    /// Leaves the group and joins again (a member stuck with no partitions while its group has
    /// lag gets a new assignment). Stored offsets are committed on the revoke, as always.
    pub fn rejoin(&self) -> Result<(), Error> {
        self.shared.consumer.unsubscribe();
        self.shared
            .consumer
            .subscribe(&[self.topic.as_str()])
            .map_err(|source| Error::Subscribe {
                topic: self.topic.clone(),
                source,
            })
    }

    /// Partitions currently assigned to this member.
    pub fn assignment(&self) -> Result<Vec<(String, i32)>, Error> {
        let tpl = self.shared.consumer.assignment().map_err(Error::Receive)?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_offset_never_passes_an_unacknowledged_record() {
        let t = Tracker::default();
        let g = t.begin("t", 0, 10);
        t.begin("t", 0, 11);
        t.begin("t", 0, 12);
        assert_eq!(t.finish("t", 0, 12, g), Some(10));
        assert_eq!(t.finish("t", 0, 10, g), Some(11));
        assert_eq!(t.finish("t", 0, 11, g), Some(13));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        t.forget(&tpl);
        assert_eq!(t.finish("t", 0, 11, g), None);
        let g2 = t.begin("t", 0, 13);
        assert_ne!(g, g2);
        assert_eq!(t.finish("t", 0, 13, g), None);
        assert_eq!(t.finish("t", 0, 13, g2), Some(14));
    }

    #[test]
    fn finishing_many_at_once_stores_what_finishing_one_by_one_would() {
        let (one, many) = (Tracker::default(), Tracker::default());
        let mut gens = Vec::new();
        for t in [&one, &many] {
            let g0 = t.begin("a", 0, 10);
            let g1 = t.begin("a", 1, 5);
            for o in 11..15 {
                t.begin("a", 0, o);
            }
            t.begin("a", 1, 6);
            gens.push((g0, g1));
        }
        let (g0, g1) = gens[0];
        // Out of order, two partitions, 13 left in flight on partition 0.
        let done = [
            ("a", 0, 12, g0),
            ("a", 1, 5, g1),
            ("a", 0, 10, g0),
            ("a", 0, 11, g0),
        ];
        let mut last = std::collections::HashMap::new();
        for &(topic, p, o, g) in &done {
            if let Some(next) = one.finish(topic, p, o, g) {
                last.insert((topic.to_string(), p), next);
            }
        }
        let (h0, h1) = gens[1];
        let mut batch: Vec<(String, i32, i64)> = many.finish_many(
            done.iter()
                .map(|&(t, p, o, g)| (t, p, o, if p == 0 { h0 + g - g0 } else { h1 + g - g1 })),
        );
        batch.sort();
        let mut expected: Vec<(String, i32, i64)> =
            last.into_iter().map(|((t, p), n)| (t, p, n)).collect();
        expected.sort();
        assert_eq!(batch, expected);
        assert_eq!(
            batch,
            vec![("a".to_string(), 0, 13), ("a".to_string(), 1, 6)]
        );
        // A partition that changed hands is skipped.
        assert!(many.finish_many([("a", 0, 13, u64::MAX)]).is_empty());
    }
}
