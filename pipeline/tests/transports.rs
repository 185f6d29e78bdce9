//! The acknowledgement semantics of both transports, through the one replay runner and the one
//! differ pool + store writer that `run`, `import`, `replay` and `diff` share.
//!
//! The Kafka tests need a real broker (`SHADOWDIFF_TEST_KAFKA`, started by
//! `scripts/services.sh`); they fail without one.

use shadowdiff_differ::Differ;
use shadowdiff_kafka::{ConsumerConfig, ProducerConfig, RecordConsumer, ResultProducer};
use shadowdiff_model::{
    Body, DiffRecord, Exchange, HttpRequest, HttpResponse, ReplayResult, RouteInferrer,
    SCHEMA_VERSION,
};
use shadowdiff_pipeline::config::Config;
use shadowdiff_pipeline::stages::{
    exchange_bytes, result_bytes, run_replay_stage, BatchPolicy, DiffWorkers, Pacer, PipelineStats,
};
use shadowdiff_pipeline::transport::{
    Acknowledge, ByteBudget, Envelope, Input, InputError, KafkaInput, KafkaResultOutput,
    MemoryOutput,
};
use shadowdiff_store::{RecordSink, StoreError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn exchange(id: &str) -> Exchange {
    Exchange {
        schema_version: SCHEMA_VERSION,
        id: id.to_string(),
        captured_at_ms: 1_763_805_600_000,
        source: "tee".into(),
        experiment: "transports".into(),
        request: HttpRequest {
            method: "GET".into(),
            uri: format!("/items/{id}"),
            headers: vec![],
            body: Body::complete(Vec::new()),
        },
        control: Some(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::complete(&b"{\"ok\":true}"[..]),
            latency_us: 1_000,
        }),
        redactions: vec![],
        sample_rate: 1.0,
    }
}

/// A result the differ turns into one row (blocked, for candidate v2) without any target.
fn result(id: &str) -> ReplayResult {
    ReplayResult {
        schema_version: SCHEMA_VERSION,
        exchange: exchange(id),
        blocked: Some("blocked for the test".into()),
        outcomes: vec![],
        candidates: vec!["v2".into()],
        side_effects: vec![],
        saturated: false,
        host_busy: false,
    }
}

/// Records every row it stores, or refuses every write while `down` is set.
#[derive(Clone, Default)]
struct TestSink {
    rows: Arc<Mutex<Vec<String>>>,
    attempts: Arc<AtomicU64>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl TestSink {
    fn ids(&self) -> Vec<String> {
        self.rows.lock().expect("sink lock").clone()
    }
}

impl RecordSink for TestSink {
    fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("down for the test".into()));
        }
        let mut rows = self.rows.lock().expect("sink lock");
        rows.extend(records.iter().map(|r| r.exchange_id.clone()));
        Ok(())
    }
}

/// An acknowledgement that records which item it confirmed.
struct Recorded {
    id: String,
    acked: Arc<Mutex<Vec<String>>>,
}

impl Acknowledge for Recorded {
    fn ack(self) {
        self.acked.lock().expect("ack lock").push(self.id);
    }
}

/// An input of `n` exchanges whose acknowledgements are recorded, holding a byte budget.
struct ListInput {
    left: std::vec::IntoIter<Exchange>,
    acked: Arc<Mutex<Vec<String>>>,
    budget: Arc<ByteBudget>,
}

impl Input<Exchange> for ListInput {
    type Ack = Recorded;

    async fn next(&mut self) -> Result<Option<Envelope<Exchange, Recorded>>, InputError> {
        let Some(item) = self.left.next() else {
            return Ok(None);
        };
        let bytes = self.budget.take(exchange_bytes(&item)).await;
        Ok(Some(Envelope {
            ack: Recorded {
                id: item.id.clone(),
                acked: self.acked.clone(),
            },
            item,
            bytes,
        }))
    }
}

fn settings(candidate: &str) -> shadowdiff_pipeline::config::ReplaySettings {
    let toml = format!(
        "[capture]\ncontrol = \"http://127.0.0.1:9\"\n\n[replay]\ntimeout_ms = 2000\n\n\
         [[replay.candidates]]\nname = \"v2\"\nurl = \"{candidate}\"\n"
    );
    let config = Config::from_toml(&toml, "test").expect("parses");
    let common = config.common().expect("validates");
    config.replay(&common).expect("validates")
}

/// A closed local port: every replay fails fast with a connect error, which is still a result.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_transport_acknowledges_every_item_once_after_its_row_is_written_and_frees_its_bytes(
) {
    let settings = settings(&closed_port_url());
    let replayer = Arc::new(settings.build(None).expect("replayer"));
    let stats = Arc::new(PipelineStats::default());
    let sink = TestSink::default();
    // The store is down at first: nothing may be acknowledged while it is.
    sink.down.store(true, Ordering::SeqCst);
    let (results, workers) = DiffWorkers::start(
        Arc::new(Differ::new(Default::default(), RouteInferrer::default())),
        2,
        64,
        Box::new(sink.clone()),
        BatchPolicy {
            rows: 16,
            linger: Duration::from_millis(20),
        },
        None,
        stats.clone(),
    )
    .expect("workers");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let budget = ByteBudget::new(u64::MAX);
    let ids: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    let input = ListInput {
        left: ids
            .iter()
            .map(|id| exchange(id))
            .collect::<Vec<_>>()
            .into_iter(),
        acked: acked.clone(),
        budget: budget.clone(),
    };
    let replay = tokio::spawn(run_replay_stage(
        input,
        replayer,
        8,
        Pacer::asap(),
        MemoryOutput::new(results),
        stats.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.attempts.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        sink.attempts.load(Ordering::SeqCst) >= 2,
        "the writer tried"
    );
    assert!(
        acked.lock().expect("lock").is_empty(),
        "acked before written"
    );
    sink.down.store(false, Ordering::SeqCst);
    replay
        .await
        .expect("replay task")
        .expect("input ended cleanly");
    workers.join().await;
    let mut got = acked.lock().expect("lock").clone();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every item acknowledged exactly once");
    let mut rows = sink.ids();
    rows.sort();
    assert_eq!(rows, want, "one row per item");
    assert_eq!(budget.used(), 0, "every byte permit returned");
    assert_eq!(PipelineStats::get(&stats.target_errors), 40);
}

fn brokers() -> String {
    std::env::var("SHADOWDIFF_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "SHADOWDIFF_TEST_KAFKA is not set: start the servers with \
             `scripts/services.sh start && source .services/env`"
        )
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn produce_results(brokers: &str, topic: &str, ids: &[String]) {
    shadowdiff_kafka::ensure_topics(brokers, &[(topic, 2)])
        .await
        .expect("topic");
    let producer = ResultProducer::new(&ProducerConfig::new(brokers, topic)).expect("producer");
    for id in ids {
        producer.send(&result(id)).await.expect("produced");
    }
}

/// One `diff` stage run on the Kafka transport until `until` holds (or 60 s), then shutdown.
async fn diff_from_kafka(
    brokers: &str,
    topic: &str,
    group: &str,
    sink: TestSink,
    until: impl Fn(&TestSink) -> bool,
    settle: Duration,
) {
    let consumer: RecordConsumer<ReplayResult> =
        RecordConsumer::new(&ConsumerConfig::new(brokers, topic, group)).expect("consumer");
    let (stop_tx, stop) = watch::channel(false);
    let stats = Arc::new(PipelineStats::default());
    let (results, workers) = DiffWorkers::start(
        Arc::new(Differ::new(Default::default(), RouteInferrer::default())),
        2,
        64,
        Box::new(sink.clone()),
        BatchPolicy {
            rows: 1000,
            linger: Duration::from_millis(50),
        },
        Some(stop.clone()),
        stats,
    )
    .expect("workers");
    let input = KafkaInput::new(consumer, ByteBudget::new(1 << 30), result_bytes, stop);
    let feeding = tokio::spawn(DiffWorkers::feed(input, results));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !until(&sink) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(settle).await;
    stop_tx.send(true).expect("stop");
    let (input, ended) = feeding.await.expect("feed task");
    ended.expect("input ended cleanly");
    workers.join().await;
    input.consumer().commit().expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_transport_acknowledges_a_result_only_once_its_rows_are_stored() {
    let brokers = brokers();
    let topic = unique("transport-results");
    let group = unique("transport-diff");
    let ids: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    produce_results(&brokers, &topic, &ids).await;

    // 1. The store refuses everything: the run stops with nothing acknowledged.
    let down = TestSink::default();
    down.down.store(true, Ordering::SeqCst);
    diff_from_kafka(
        &brokers,
        &topic,
        &group,
        down.clone(),
        |s| s.attempts.load(Ordering::SeqCst) >= 2,
        Duration::ZERO,
    )
    .await;
    assert!(down.ids().is_empty());

    // 2. Same group, store up: every result is delivered again and stored.
    let up = TestSink::default();
    let want: HashSet<String> = ids.iter().cloned().collect();
    diff_from_kafka(
        &brokers,
        &topic,
        &group,
        up.clone(),
        |s| s.ids().iter().cloned().collect::<HashSet<_>>() == want,
        Duration::ZERO,
    )
    .await;
    let stored: HashSet<String> = up.ids().into_iter().collect();
    assert_eq!(stored, want, "everything unacknowledged came back");

    // 3. Same group again: what was stored was acknowledged and committed, so only a new
    //    record arrives.
    produce_results(&brokers, &topic, &["marker".to_string()]).await;
    let after = TestSink::default();
    diff_from_kafka(
        &brokers,
        &topic,
        &group,
        after.clone(),
        |s| s.ids().contains(&"marker".to_string()),
        Duration::from_secs(2),
    )
    .await;
    // Two seconds after the marker, no earlier result was delivered again.
    assert_eq!(after.ids(), vec!["marker".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_replay_stage_publishes_a_result_per_exchange_and_commits_what_it_published() {
    let brokers = brokers();
    let exchanges_topic = unique("transport-exchanges");
    let results_topic = unique("transport-replayed");
    let group = unique("transport-replay");
    shadowdiff_kafka::ensure_topics(&brokers, &[(&exchanges_topic, 2), (&results_topic, 2)])
        .await
        .expect("topics");
    let producer =
        shadowdiff_kafka::ExchangeProducer::new(&ProducerConfig::new(&brokers, &exchanges_topic))
            .expect("producer");
    let ids: Vec<String> = (0..15).map(|i| format!("r{i}")).collect();
    for id in &ids {
        producer
            .try_send(&exchange(id), "/items/:id")
            .expect("queued");
    }
    let flush = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)));
    flush.await.expect("join").expect("flushed");

    let settings = settings(&closed_port_url());
    let replay_once = |group: String| {
        let (brokers, exchanges_topic, results_topic, settings) = (
            brokers.clone(),
            exchanges_topic.clone(),
            results_topic.clone(),
            settings.clone(),
        );
        async move {
            let consumer: RecordConsumer<Exchange> =
                RecordConsumer::new(&ConsumerConfig::new(&brokers, &exchanges_topic, &group))
                    .expect("consumer");
            let results = Arc::new(
                ResultProducer::new(&ProducerConfig::new(&brokers, &results_topic))
                    .expect("results producer"),
            );
            let (stop_tx, stop) = watch::channel(false);
            let stats = Arc::new(PipelineStats::default());
            let input = KafkaInput::new(
                consumer,
                ByteBudget::new(1 << 30),
                exchange_bytes,
                stop.clone(),
            );
            let consumer = input.consumer();
            let run = tokio::spawn(run_replay_stage(
                input,
                Arc::new(settings.build(None).expect("replayer")),
                4,
                Pacer::asap(),
                KafkaResultOutput::new(results, stop),
                stats.clone(),
            ));
            let deadline = Instant::now() + Duration::from_secs(45);
            let done = |s: &PipelineStats| PipelineStats::get(&s.replayed) >= 15;
            while !done(&stats) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // A second run must find nothing to replay: stop it after a few seconds.
            if PipelineStats::get(&stats.replayed) == 0 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            stop_tx.send(true).expect("stop");
            run.await
                .expect("replay task")
                .expect("input ended cleanly");
            consumer.commit().expect("commit");
            PipelineStats::get(&stats.replayed)
        }
    };
    assert_eq!(replay_once(group.clone()).await, 15);

    // Every exchange has exactly one result on the results topic.
    let reader: RecordConsumer<ReplayResult> = RecordConsumer::new(&ConsumerConfig::new(
        &brokers,
        &results_topic,
        unique("reader"),
    ))
    .expect("reader");
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    while seen.len() < 15 && Instant::now() < deadline {
        if let Ok(Ok((r, d))) = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await {
            seen.push(r.exchange.id.clone());
            d.ack();
        }
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);

    // Published results were acknowledged and committed: the same group replays nothing.
    assert_eq!(replay_once(group).await, 0);
}

/// Records when each result was handed on.
#[derive(Clone, Default)]
struct TimedOutput(Arc<Mutex<Vec<Instant>>>);

impl<A: Acknowledge> shadowdiff_pipeline::transport::Output<ReplayResult, A> for TimedOutput {
    async fn deliver(&self, envelope: Envelope<ReplayResult, A>) {
        self.0.lock().expect("times lock").push(Instant::now());
        envelope.ack.ack();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_replayed_at_its_captured_pace_not_at_once() {
    let settings = settings(&closed_port_url());
    let replayer = Arc::new(settings.build(None).expect("replayer"));
    // Ten exchanges captured 60 ms apart, all waiting in the input at once (a backlog).
    let exchanges: Vec<Exchange> = (0..10)
        .map(|i| {
            let mut e = exchange(&format!("paced-{i}"));
            e.captured_at_ms = 1_763_805_600_000 + i * 60;
            e
        })
        .collect();
    let input = ListInput {
        left: exchanges.into_iter(),
        acked: Arc::new(Mutex::new(Vec::new())),
        budget: ByteBudget::unbounded(),
    };
    let times = TimedOutput::default();
    run_replay_stage(
        input,
        replayer,
        64,
        Pacer::new(shadowdiff_pipeline::config::Pacing::Captured, 0),
        times.clone(),
        Arc::new(PipelineStats::default()),
    )
    .await
    .expect("input ended cleanly");
    let mut times = times.0.lock().expect("times lock").clone();
    times.sort();
    assert_eq!(times.len(), 10);
    // 9 gaps of 60 ms: the backlog took at least the time it was captured in (sleeps never
    // end early; a last wait under 5 ms may be skipped), although 64 replays could go at once.
    let spread = times[9] - times[0];
    assert!(spread >= Duration::from_millis(9 * 60 - 5), "{spread:?}");
}
