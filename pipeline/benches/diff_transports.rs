//! Diff stage throughput on both transports, measured in the same run: the differ pool + store
//! writer fed from memory (as in `shadowdiff run`) and from a Kafka topic (as in
//! `shadowdiff diff`), with the same worker count and the same results.
//!
//! ```text
//! scripts/services.sh start && source .services/env
//! cargo bench -p shadowdiff-pipeline --bench diff_transports -- [--results N] [--workers N] [--rounds N] [--only consume|inline|pool]
//! ```
//!
//! Results are 2–4 KB JSON tweets from the repository's corpus (`corpus/json/twitter.json`,
//! `SHADOWDIFF_CORPUS` names another directory), control against a candidate that changed one
//! number, so each pair is parsed and diffed in full. Rows go to a sink that only counts them,
//! so the figure is the stage's, not a store's. The Kafka rates include consuming and decoding
//! every record; the topic is filled before the clocks start. Per round it prints: the memory
//! pool's rate; on Kafka, what a bare consumer reads (the ceiling any diff stage on this broker
//! has), the former distributed shape (diff inline on the consuming task, as a peer) and the
//! pool; and the median of pool / former shape.

/// The allocator the `shadowdiff` binary uses: results are decoded on the consuming thread and
/// freed on a differ thread, which glibc's malloc makes expensive.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use shadowdiff_differ::Differ;
use shadowdiff_kafka::{ConsumerConfig, ProducerConfig, RecordConsumer, ResultProducer};
use shadowdiff_model::{
    Body, DiffRecord, Exchange, HttpRequest, HttpResponse, ReplayResult, RouteInferrer,
    TargetOutcome, TargetRole, SCHEMA_VERSION,
};
use shadowdiff_pipeline::stages::{result_bytes, BatchPolicy, DiffWorkers, PipelineStats};
use shadowdiff_pipeline::transport::{ByteBudget, BytePermit, Envelope, KafkaInput};
use shadowdiff_store::{RecordSink, StoreError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Args {
    results: usize,
    workers: usize,
    rounds: usize,
    /// Only this Kafka reader (`consume`, `inline`, `pool`), for profiling one of them.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        results: 20_000,
        workers: 2,
        rounds: 3,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--results" => a.results = value(),
            "--workers" => a.workers = value(),
            "--rounds" => a.rounds = value(),
            "--only" => a.only = it.next(),
            // cargo bench passes --bench; anything else is a mistake worth stopping for.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn tweets() -> Vec<serde_json::Value> {
    let dir = std::env::var_os("SHADOWDIFF_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus/json"));
    let path = dir.join("twitter.json");
    let text = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("read {}: {e} (set SHADOWDIFF_CORPUS)", path.display()));
    let doc: serde_json::Value = serde_json::from_slice(&text).expect("corpus is JSON");
    doc["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if let Some(o) = s.as_object_mut() {
                o.remove("retweeted_status");
            }
            s
        })
        .filter(|s| (2048..=4096).contains(&serde_json::to_vec(s).map_or(0, |v| v.len())))
        .collect()
}

fn response(body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Body::complete(body),
        latency_us: 2_000,
    }
}

fn results(n: usize) -> Vec<ReplayResult> {
    let docs = tweets();
    assert!(!docs.is_empty(), "no 2-4 KB tweets in the corpus");
    (0..n)
        .map(|i| {
            let control = &docs[i % docs.len()];
            let mut candidate = control.clone();
            candidate["retweet_count"] = serde_json::json!(i);
            ReplayResult {
                schema_version: SCHEMA_VERSION,
                exchange: Exchange {
                    schema_version: SCHEMA_VERSION,
                    id: format!("bench-{i}"),
                    captured_at_ms: 1_763_805_600_000,
                    source: "tee".into(),
                    experiment: "bench".into(),
                    request: HttpRequest {
                        method: "GET".into(),
                        uri: format!("/statuses/{}", i % 1000),
                        headers: vec![("accept".into(), "application/json".into())],
                        body: Body::complete(Vec::new()),
                    },
                    control: Some(response(serde_json::to_vec(control).expect("json"))),
                    redactions: vec![],
                    sample_rate: 1.0,
                },
                blocked: None,
                outcomes: vec![TargetOutcome {
                    target: "v2".into(),
                    role: TargetRole::Candidate,
                    result: Ok(response(serde_json::to_vec(&candidate).expect("json"))),
                }],
                candidates: vec!["v2".into()],
                side_effects: vec![],
                saturated: false,
                host_busy: false,
            }
        })
        .collect()
}

/// Counts rows; stores nothing.
struct CountingSink(Arc<AtomicU64>);

impl RecordSink for CountingSink {
    fn write_batch(&mut self, records: &[DiffRecord]) -> Result<(), StoreError> {
        self.0.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

async fn wait_rows(rows: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while rows.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "the diff stage stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state; utime and stime
    // are the 14th and 15th fields of the line, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU clocks of one reader.
struct Clock {
    wall: Instant,
    cpu: f64,
}

/// Items per second, and CPU microseconds per item across the whole process.
#[derive(Default, Clone, Copy)]
struct Rate {
    per_second: f64,
    cpu_us: f64,
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }

    fn stop(self, items: u64) -> Rate {
        let n = items.max(1) as f64;
        Rate {
            per_second: n / self.wall.elapsed().as_secs_f64(),
            cpu_us: (cpu_seconds() - self.cpu) * 1e6 / n,
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s ({:.1} µs CPU each)",
            self.per_second, self.cpu_us
        )
    }
}

fn differ() -> Arc<Differ> {
    Arc::new(Differ::new(Default::default(), RouteInferrer::default()))
}

/// Results per second through the memory transport.
async fn memory_round(results: &[ReplayResult], workers: usize) -> Rate {
    let rows = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(PipelineStats::default());
    let (tx, pool) = DiffWorkers::start::<()>(
        differ(),
        workers,
        4096,
        Box::new(CountingSink(rows.clone())),
        BatchPolicy::default(),
        None,
        stats.clone(),
    )
    .expect("workers");
    let owned: Vec<ReplayResult> = results.to_vec();
    let clock = Clock::start();
    let feeder = tokio::spawn(async move {
        for item in owned {
            let envelope = Envelope {
                item,
                ack: (),
                bytes: BytePermit::none(),
            };
            if shadowdiff_pipeline::stages::send_async(&tx, envelope)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // Diffed, not written: the writer's linger is latency, not throughput.
    wait_rows(&stats.compared, results.len() as u64).await;
    let rate = clock.stop(results.len() as u64);
    let _ = feeder.await;
    pool.join().await;
    assert_eq!(rows.load(Ordering::Relaxed), results.len() as u64);
    rate
}

/// Fills a new topic with `results` (not timed).
async fn fill_topic(brokers: &str, results: &[ReplayResult]) -> String {
    let topic = format!("bench-diff-{}", uuid::Uuid::new_v4().simple());
    shadowdiff_kafka::ensure_topics(brokers, &[(topic.as_str(), 2)])
        .await
        .expect("topic");
    let producer =
        Arc::new(ResultProducer::new(&ProducerConfig::new(brokers, &topic)).expect("producer"));
    let sends: Vec<_> = results
        .iter()
        .cloned()
        .map(|r| {
            let producer = producer.clone();
            tokio::spawn(async move { producer.send(&r).await })
        })
        .collect();
    for s in sends {
        s.await.expect("join").expect("produced");
    }
    topic
}

fn consumer(brokers: &str, topic: &str) -> RecordConsumer<ReplayResult> {
    let group = format!("bench-diff-{}", uuid::Uuid::new_v4().simple());
    let mut config = ConsumerConfig::new(brokers, topic, &group);
    // Extra librdkafka settings to compare fetch patterns: `KEY=VALUE,KEY=VALUE`.
    if let Ok(options) = std::env::var("BENCH_CONSUMER_OPTIONS") {
        for pair in options.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').expect("KEY=VALUE");
            config
                .librdkafka_options
                .insert(key.to_string(), value.to_string());
        }
    }
    RecordConsumer::new(&config).expect("consumer")
}

/// Records per second a consumer alone reads and decodes from the topic: the broker's and
/// client's ceiling for any diff stage on this transport. The clock starts at the first record
/// (joining the group is not throughput).
async fn consume_only(brokers: &str, topic: &str, n: usize) -> Rate {
    let consumer = consumer(brokers, topic);
    let (_, first) = consumer.recv().await.expect("record");
    first.ack();
    let clock = Clock::start();
    for _ in 1..n {
        let (_, d) = consumer.recv().await.expect("record");
        d.ack();
    }
    clock.stop(n as u64 - 1)
}

/// The distributed diff's former shape, measured as a peer: each result diffed inline on the
/// consuming task, one at a time.
async fn inline_diff(brokers: &str, topic: &str, n: usize) -> Rate {
    let consumer = consumer(brokers, topic);
    let differ = differ();
    let (r, d) = consumer.recv().await.expect("record");
    let mut rows = differ.diff(&r).len();
    d.ack();
    let clock = Clock::start();
    for _ in 1..n {
        let (r, d) = consumer.recv().await.expect("record");
        rows += tokio::task::block_in_place(|| differ.diff(&r)).len();
        d.ack();
    }
    let rate = clock.stop(n as u64 - 1);
    assert_eq!(rows, n);
    rate
}

/// Results per second through the Kafka transport (the one runner: feeder, differ pool,
/// writer), from a topic filled beforehand.
async fn kafka_round(brokers: &str, topic: &str, n: usize, workers: usize) -> Rate {
    let consumer = consumer(brokers, topic);
    let rows = Arc::new(AtomicU64::new(0));
    let stats = Arc::new(PipelineStats::default());
    let (stop_tx, stop) = watch::channel(false);
    let (tx, pool) = DiffWorkers::start(
        differ(),
        workers,
        4096,
        Box::new(CountingSink(rows.clone())),
        BatchPolicy::default(),
        Some(stop.clone()),
        stats.clone(),
    )
    .expect("workers");
    let input = KafkaInput::new(consumer, ByteBudget::new(256 << 20), result_bytes, stop);
    // The clock starts at the first diff: joining the group is not the stage's throughput;
    // it stops at the last diff: the writer's linger is latency, not throughput.
    // The feed runs on a thread of its own, as it runs on the main thread of `shadowdiff diff`:
    // when records are always ready it never yields, and on this runtime's only worker it
    // would keep the timer of the clock below from firing.
    let feeding = shadowdiff_pipeline::stages::spawn_on_own_thread(
        "bench-feed",
        DiffWorkers::feed(input, tx),
    )
    .expect("feed thread");
    wait_rows(&stats.compared, 1).await;
    let clock = Clock::start();
    let first = stats.compared.load(Ordering::Relaxed);
    wait_rows(&stats.compared, n as u64).await;
    let rate = clock.stop(n as u64 - first);
    let _ = stop_tx.send(true);
    let _ = feeding.await;
    pool.join().await;
    rate
}

fn main() {
    let args = args();
    let brokers = std::env::var("SHADOWDIFF_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "SHADOWDIFF_TEST_KAFKA is not set: scripts/services.sh start && source .services/env"
        )
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let results = results(args.results);
    println!(
        "diff stage, {} results of 2-4 KB JSON, {} differ threads, {} rounds",
        args.results, args.workers, args.rounds
    );
    // What decoding alone costs one thread: the consumer decodes every record before the
    // stage sees it.
    let encoded: Vec<Vec<u8>> = results.iter().map(shadowdiff_model::encode).collect();
    let started = Instant::now();
    for bytes in &encoded {
        let r: ReplayResult = shadowdiff_model::decode(bytes).expect("decodes");
        std::hint::black_box(r);
    }
    println!(
        "decode only, one thread: {:.0} records/s ({} bytes each on average)",
        encoded.len() as f64 / started.elapsed().as_secs_f64(),
        encoded.iter().map(Vec::len).sum::<usize>() / encoded.len().max(1)
    );
    let mut ratios = Vec::new();
    for round in 1..=args.rounds {
        let memory = runtime.block_on(memory_round(&results, args.workers));
        let topic = runtime.block_on(fill_topic(&brokers, &results));
        // The three readers of the topic take turns going first: the broker may serve a topic
        // read before faster or slower than one read for the first time.
        let (mut ceiling, mut inline, mut kafka) =
            (Rate::default(), Rate::default(), Rate::default());
        for k in 0..3 {
            let which = (k + round) % 3;
            let name = ["consume", "inline", "pool"][which];
            if args.only.as_deref().is_some_and(|only| only != name) {
                continue;
            }
            match which {
                0 => ceiling = runtime.block_on(consume_only(&brokers, &topic, results.len())),
                1 => inline = runtime.block_on(inline_diff(&brokers, &topic, results.len())),
                _ => {
                    kafka =
                        runtime.block_on(kafka_round(&brokers, &topic, results.len(), args.workers))
                }
            }
        }
        println!(
            "round {round}: memory pool {memory}\n  kafka: consume only {ceiling}; inline diff (old shape) {inline}; pool {kafka}\n  pool/inline {:.2}, pool/consume-only {:.2}, pool/memory {:.2}",
            kafka.per_second / inline.per_second,
            kafka.per_second / ceiling.per_second,
            kafka.per_second / memory.per_second
        );
        ratios.push(kafka.per_second / inline.per_second);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median kafka pool / inline (old shape): {:.2}",
        ratios[ratios.len() / 2]
    );
}
