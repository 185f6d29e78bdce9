//! Integration tests against a real Kafka-protocol broker (`SHADOWDIFF_TEST_KAFKA`).

mod common;

use common::{brokers, exchange, result, unique, Broker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use shadowdiff_kafka::{
    ensure_topics, ConsumerConfig, ExchangeProducer, ProducerConfig, RecordConsumer,
    ResultProducer, HEADER_DLQ_ERROR,
};
use shadowdiff_model::{Exchange, ReplayResult};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn recv<T: serde::de::DeserializeOwned>(
    consumer: &RecordConsumer<T>,
    within: Duration,
) -> Option<(T, shadowdiff_kafka::Delivery)> {
    match tokio::time::timeout(within, consumer.recv()).await {
        Ok(r) => Some(r.expect("receive")),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_key_headers_and_record() {
    let brokers = brokers();
    let topic = unique("sd-roundtrip");
    ensure_topics(&brokers, &[(&topic, 3)])
        .await
        .expect("topic");
    // Creating an existing topic again is fine.
    ensure_topics(&brokers, &[(&topic, 3)])
        .await
        .expect("idempotent");

    let producer = ExchangeProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer");
    let sent: Vec<Exchange> = (0..5)
        .map(|i| exchange(&format!("id-{i}"), format!("{{\"n\":{i}}}").into_bytes()))
        .collect();
    for ex in &sent {
        producer.try_send(ex, "/users/{id}").expect("queued");
    }
    producer.flush(WAIT).expect("flushed");
    assert_eq!(producer.delivery_counts(), (5, 0));

    let consumer: RecordConsumer<Exchange> =
        RecordConsumer::new(&ConsumerConfig::new(&brokers, &topic, unique("g"))).expect("consumer");
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let (ex, delivery) = recv(&consumer, WAIT).await.expect("all records arrive");
        assert_eq!(delivery.key(), Some(ex.id.as_bytes()));
        assert_eq!(delivery.header("schema_version"), Some(&b"1"[..]));
        assert_eq!(delivery.header("method"), Some(&b"GET"[..]));
        assert_eq!(delivery.header("route"), Some(&b"/users/{id}"[..]));
        delivery.ack();
        got.push(ex);
    }
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_records_are_redelivered_and_acknowledged_ones_are_not() {
    let brokers = brokers();
    let topic = unique("sd-alo");
    let group = unique("g");
    ensure_topics(&brokers, &[(&topic, 1)])
        .await
        .expect("topic");
    let producer = ResultProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer");
    for i in 0..10 {
        producer
            .send(&result(&format!("r{i:02}")))
            .await
            .expect("acknowledged");
    }

    let config = ConsumerConfig::new(&brokers, &topic, &group);
    {
        let consumer: RecordConsumer<ReplayResult> =
            RecordConsumer::new(&config).expect("consumer");
        let mut pending = Vec::new();
        for i in 0..10 {
            let (r, delivery) = recv(&consumer, WAIT).await.expect("record");
            assert_eq!(r.exchange.id, format!("r{i:02}"));
            pending.push(delivery);
        }
        // Acknowledge out of order: 0..3 and 4, but not 3 and 5.., so only 0..3 may be committed.
        let mut pending: Vec<_> = pending.into_iter().map(Some).collect();
        for i in [4usize, 0, 2, 1] {
            if let Some(d) = pending[i].take() {
                d.ack();
            }
        }
        consumer.commit().expect("commit");
        // The rest are dropped without ack: a crash or a failing next stage.
    }

    let consumer: RecordConsumer<ReplayResult> = RecordConsumer::new(&config).expect("consumer");
    let mut again = Vec::new();
    while let Some((r, delivery)) = recv(&consumer, Duration::from_secs(10)).await {
        again.push(r.exchange.id.clone());
        delivery.ack();
        if again.len() == 7 {
            break;
        }
    }
    let expected: Vec<String> = (3..10).map(|i| format!("r{i:02}")).collect();
    assert_eq!(
        again, expected,
        "redelivered from the first unacknowledged record"
    );
    consumer.commit().expect("commit");
    drop(consumer);

    let consumer: RecordConsumer<ReplayResult> = RecordConsumer::new(&config).expect("consumer");
    assert!(
        recv(&consumer, Duration::from_secs(8)).await.is_none(),
        "everything acknowledged: nothing comes back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_exchange_is_truncated_and_delivered() {
    let brokers = brokers();
    let topic = unique("sd-big");
    ensure_topics(&brokers, &[(&topic, 1)])
        .await
        .expect("topic");
    let producer = ExchangeProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer");
    let big = exchange("big", vec![b'x'; 3 * 1024 * 1024]);
    producer.try_send(&big, "/upload").expect("queued");
    producer
        .try_send(&exchange("small", b"{}".to_vec()), "/upload")
        .expect("queued");
    producer.flush(WAIT).expect("flushed");
    assert_eq!(producer.delivery_counts(), (2, 0));

    let consumer: RecordConsumer<Exchange> =
        RecordConsumer::new(&ConsumerConfig::new(&brokers, &topic, unique("g"))).expect("consumer");
    let (got, delivery) = recv(&consumer, WAIT).await.expect("big one arrives");
    delivery.ack();
    assert_eq!(got.id, "big");
    assert!(got.request.body.truncated);
    assert_eq!(got.request.body.full_len, 3 * 1024 * 1024);
    assert!(!got.request.body.bytes.is_empty(), "a prefix is kept");
    assert!(got.request.body.bytes.iter().all(|b| *b == b'x'));
    let (small, delivery) = recv(&consumer, WAIT).await.expect("small one arrives");
    delivery.ack();
    assert!(!small.request.body.truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_version_records_are_skipped_not_stalling() {
    let brokers = brokers();
    let topic = unique("sd-dlq");
    let dlq = shadowdiff_kafka::dead_letter_topic(&topic);
    let group = unique("g");
    ensure_topics(&brokers, &[(&topic, 1), (&dlq, 1)])
        .await
        .expect("topics");

    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("raw producer");
    let valid = shadowdiff_model::encode(&exchange("good", b"{}".to_vec()));
    let mut future = serde_json::to_value(exchange("future", Vec::new())).expect("json");
    future["schema_version"] = 99.into();
    let future = serde_json::to_vec(&future).expect("json");
    for (key, payload) in [
        ("bad", &b"\x00not json at all"[..]),
        ("future", &future[..]),
        ("good", &valid[..]),
    ] {
        raw.send(
            FutureRecord::to(&topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .expect("raw record acknowledged");
    }

    let config = ConsumerConfig::new(&brokers, &topic, &group).with_default_dead_letter_topic();
    let consumer: RecordConsumer<Exchange> = RecordConsumer::new(&config).expect("consumer");
    let (good, delivery) = recv(&consumer, WAIT)
        .await
        .expect("the valid record gets through");
    assert_eq!(good.id, "good");
    assert_eq!(delivery.offset(), 2);
    delivery.ack();
    assert_eq!(consumer.skipped(), 2);
    consumer.commit().expect("commit");
    drop(consumer);

    // The skipped records' offsets were stored too: nothing is redelivered.
    let consumer: RecordConsumer<Exchange> = RecordConsumer::new(&config).expect("consumer");
    assert!(recv(&consumer, Duration::from_secs(8)).await.is_none());
    assert_eq!(consumer.skipped(), 0);

    // Both bad records are in the dead-letter topic, with the reason.
    let dlq_reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq consumer");
    dlq_reader.subscribe(&[dlq.as_str()]).expect("subscribe");
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        let m = tokio::time::timeout(WAIT, dlq_reader.recv())
            .await
            .expect("dead letters arrive")
            .expect("receive");
        let reason = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == HEADER_DLQ_ERROR))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
            .expect("dlq_error header");
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        if key == "future" {
            assert!(reason.contains("schema version 99"), "{reason}");
        }
        seen.insert(key);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["bad".to_string(), "future".to_string()])
    );
}

/// Every record the broker acknowledged survives `kill -9` of a broker with sqlite storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_broker_kill_9() {
    let mut broker = Broker::start();
    let brokers = broker.address();
    let topic = unique("sd-kill9");
    ensure_topics(&brokers, &[(&topic, 2)])
        .await
        .expect("topic");

    // Phase 1: the capture producer, flushed, then the broker dies.
    let capture = ExchangeProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer");
    let mut acknowledged = BTreeSet::new();
    for i in 0..200 {
        let id = format!("c{i:04}");
        capture
            .try_send(&exchange(&id, vec![b'a'; 512]), "/users/{id}")
            .expect("queued");
        acknowledged.insert(id);
    }
    capture.flush(WAIT).expect("flushed");
    assert_eq!(capture.delivery_counts(), (200, 0));

    // Phase 2: awaited sends while the broker is killed and restarted.
    let results = std::sync::Arc::new(
        ResultProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer"),
    );
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let results = results.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..300 {
                progress.store(i, std::sync::atomic::Ordering::Relaxed);
                let id = format!("r{i:04}");
                let r = result(&id);
                // The route header is the only difference from an exchange record; the test
                // topic carries both kinds and reads them as exchanges below.
                if results.send(&r).await.is_ok() {
                    acked.push(id);
                }
            }
            acked
        })
    };
    while progress.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill9();
    let at_kill = progress.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_kill < 299,
        "the broker died while records were being sent"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.restart();
    let acked = tokio::time::timeout(Duration::from_secs(120), sender)
        .await
        .expect("sends finish")
        .expect("sender task");
    assert!(!acked.is_empty());
    let phase2 = acked.len();
    acknowledged.extend(acked);

    // Read everything back with a fresh group.
    let consumer: RecordConsumer<serde_json::Value> =
        RecordConsumer::new(&ConsumerConfig::new(&brokers, &topic, unique("g"))).expect("consumer");
    let mut seen = BTreeSet::new();
    while !acknowledged.is_subset(&seen) {
        let Some((v, delivery)) = recv(&consumer, WAIT).await else {
            break;
        };
        delivery.ack();
        let id = v
            .get("id")
            .or_else(|| v.get("exchange").and_then(|e| e.get("id")))
            .and_then(|id| id.as_str())
            .expect("record id")
            .to_string();
        seen.insert(id);
    }
    let lost: Vec<_> = acknowledged.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {lost:?}"
    );
    eprintln!(
        "kill -9 after {at_kill} of 300 sends: {} acknowledged records ({phase2} in phase 2), none lost",
        acknowledged.len()
    );
}

/// A member that loses partitions in a rebalance commits what it acknowledged first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_partitions_commit_acknowledged_offsets() {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};

    let brokers = brokers();
    let topic = unique("sd-revoke");
    let group = unique("g");
    ensure_topics(&brokers, &[(&topic, 2)])
        .await
        .expect("topic");
    let producer = ResultProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer");
    for i in 0..10 {
        producer
            .send(&result(&format!("v{i}")))
            .await
            .expect("acknowledged");
    }

    let mut config = ConsumerConfig::new(&brokers, &topic, &group);
    // No periodic commits: only the revoke (or close) commits.
    config.commit_interval_ms = 600_000;
    let a = std::sync::Arc::new(RecordConsumer::<ReplayResult>::new(&config).expect("a"));
    for _ in 0..10 {
        let (_, d) = recv(&a, WAIT).await.expect("record");
        d.ack();
    }
    // Keep polling `a` so it takes part in the rebalance.
    let poller = {
        let a = a.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((_, d)) = a.recv().await {
                    d.ack();
                }
            }
        })
    };
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .expect("offset reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    tpl.add_partition(&topic, 1);
    let committed_total = |reader: &BaseConsumer| -> i64 {
        reader
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .expect("committed offsets")
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        committed_total(&reader),
        0,
        "nothing committed before the rebalance"
    );

    let b = RecordConsumer::<ReplayResult>::new(&config).expect("b");
    let b_poller = tokio::spawn(async move {
        loop {
            if let Ok((_, d)) = b.recv().await {
                d.ack();
            }
        }
    });

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let committed = loop {
        let total = committed_total(&reader);
        if total == 10 || std::time::Instant::now() > deadline {
            break total;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    poller.abort();
    b_poller.abort();
    assert_eq!(
        committed, 10,
        "the rebalance committed every acknowledged offset"
    );
}

/// A member that owns no partitions can tell that its group has lag (what the stages' watchdog
/// uses to warn, report not ready and re-join): one partition held by a member that reads but
/// never acknowledges, a second member that gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_member_sees_its_groups_lag_and_can_rejoin() {
    let brokers = brokers();
    let topic = unique("sd-lag");
    let group = unique("g");
    ensure_topics(&brokers, &[(&topic, 1)])
        .await
        .expect("topic");
    let producer = ResultProducer::new(&ProducerConfig::new(&brokers, &topic)).expect("producer");
    for i in 0..5 {
        producer
            .send(&result(&format!("l{i}")))
            .await
            .expect("acknowledged");
    }
    let config = ConsumerConfig::new(&brokers, &topic, &group);
    let holder = std::sync::Arc::new(RecordConsumer::<ReplayResult>::new(&config).expect("holder"));
    // The holder takes the one partition and reads everything, acknowledging nothing.
    let mut held = Vec::new();
    for _ in 0..5 {
        let (_, d) = recv(&holder, WAIT).await.expect("record");
        held.push(d);
    }
    let poller = {
        let holder = holder.clone();
        tokio::spawn(async move {
            loop {
                let _ = holder.recv().await;
            }
        })
    };
    let idle = std::sync::Arc::new(RecordConsumer::<ReplayResult>::new(&config).expect("idle"));
    let idle_poller = {
        let idle = idle.clone();
        tokio::spawn(async move {
            loop {
                let _ = idle.recv().await;
            }
        })
    };
    // Once the group settles, one member holds the partition and the other holds nothing.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (mut owns_h, mut owns_i) = (0, 0);
    while std::time::Instant::now() < deadline {
        owns_h = holder.assignment().expect("assignment").len();
        owns_i = idle.assignment().expect("assignment").len();
        if owns_h + owns_i == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(owns_h + owns_i, 1, "the one partition is owned once");
    let empty = if owns_i == 0 { &idle } else { &holder };
    let lag = {
        let c = empty.clone();
        tokio::task::spawn_blocking(move || c.group_lag(std::time::Duration::from_secs(10)))
            .await
            .expect("join")
            .expect("group lag")
    };
    assert_eq!(lag, 5, "nothing committed: every record is lag");
    // Re-joining works and leaves the member in the group.
    empty.rejoin().expect("rejoin");
    poller.abort();
    idle_poller.abort();
    drop(held);
}

/// A member closed right after a re-join (the watchdog's re-join, then SIGTERM) closes cleanly:
/// librdkafka postpones the re-join's subscribe while the group rebalances, and a close in that
/// window used to apply it after the close's unsubscribe and abort the process in
/// `rd_kafka_cgrp_destroy_final` (`assert: !rkcg->rkcg_subscription`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_closed_right_after_a_rejoin_closes_cleanly() {
    let brokers = brokers();
    let topic = unique("sd-rejoin-close");
    ensure_topics(&brokers, &[(&topic, 2)])
        .await
        .expect("topic");
    for round in 0..12 {
        let config = ConsumerConfig::new(&brokers, &topic, unique("g"));
        let member = RecordConsumer::<ReplayResult>::new(&config).expect("member");
        // Half the rounds close while the first join is still under way, half once assigned.
        if round % 2 == 1 {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while member.assignment().expect("assignment").is_empty() {
                assert!(std::time::Instant::now() < deadline, "never assigned");
                let _ = tokio::time::timeout(Duration::from_millis(50), member.recv()).await;
            }
        }
        member.rejoin().expect("rejoin");
        tokio::task::spawn_blocking(move || drop(member))
            .await
            .expect("closed");
    }
}
