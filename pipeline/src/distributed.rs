//! The distributed deployment: `capture`, `replay` and `diff` as separate processes over Kafka,
//! results in ClickHouse. Same stages as the embedded pipeline, other transport and store.
//!
//! Delivery is at least once: the replayer acknowledges an exchange only after its result was
//! acknowledged by the broker; the differ only after its rows were committed in ClickHouse. A
//! record that is delivered twice is counted once by the report.

use crate::admin::{start_admin, ReadyCheck};
use crate::components::PipelineError;
use crate::config::{
    ClickHouseSettings, CommonSettings, ConfigError, DiffSettings, KafkaSettings, ReplaySettings,
    TapSettings,
};
use crate::stages::{
    exchange_bytes, result_bytes, run_replay_stage, until_true, BatchPolicy, DiffWorkers, Pacer,
    PipelineStats,
};
use crate::transport::{ByteBudget, InputError, KafkaInput, KafkaResultOutput};
use shadowdiff_capture::redact::RedactingSink;
use shadowdiff_capture::{ExchangeSink, OfferError};
use shadowdiff_clickhouse::{ClickHouseSink, ClickHouseStore};
use shadowdiff_kafka::{
    ExchangeProducer, ProduceError, ProducerConfig, RecordConsumer, ResultProducer,
};
use shadowdiff_model::{Exchange, ReplayResult, RouteInferrer};
use shadowdiff_net::Backoff;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why a distributed stage stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// A section the stage needs is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client, subscription or admin request failed.
    #[error("Kafka")]
    Kafka(#[from] shadowdiff_kafka::Error),
    /// The producer refused a record or could not flush.
    #[error("Kafka producer")]
    Produce(#[from] ProduceError),
    /// The ClickHouse store could not be reached, migrated or written.
    #[error("ClickHouse")]
    ClickHouse(#[from] shadowdiff_clickhouse::Error),
    /// The tap's or the admin endpoint's address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A component shared with the embedded pipeline could not start.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The Kafka input stopped with a fatal error.
    #[error("input")]
    Input(#[from] InputError),
    /// The tap's serving threads could not start or failed.
    #[error("the tap's serving threads")]
    TapThreads(#[source] std::io::Error),
    /// A background task panicked or was cancelled.
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// An exchange to publish was refused by the producer.
    #[error("exchange {id} not published")]
    NotPublished {
        /// The exchange's id.
        id: String,
        /// The producer's error.
        #[source]
        source: ProduceError,
    },
    /// The topics could not be checked or created at start: the broker did not answer or
    /// refused.
    #[error(
        "cannot check or create the topics on Kafka at {brokers} (is a broker listening there, \
         and reachable from this host?)"
    )]
    Broker {
        /// The configured brokers.
        brokers: String,
        /// What the admin client saw.
        #[source]
        source: shadowdiff_kafka::Error,
    },
    /// The ClickHouse URL answered, but the schema could not be set up there.
    #[error(
        "cannot set up the schema at {url}: is it a ClickHouse HTTP endpoint (port 8123 by \
         default), and may this user create databases and tables?"
    )]
    NotClickHouse {
        /// The configured URL.
        url: String,
        /// What the server answered.
        #[source]
        source: shadowdiff_clickhouse::Error,
    },
    /// The broker did not acknowledge some published exchanges.
    #[error("{failed} of {offered} exchanges were not acknowledged by the broker")]
    Unacknowledged {
        /// Exchanges the broker did not acknowledge.
        failed: u64,
        /// Exchanges handed to the producer.
        offered: u64,
    },
}

/// Checks or creates the topics, naming the brokers when that fails. Returns `false` when asked
/// to stop meanwhile: a stage waiting for an absent broker honours SIGTERM at once.
async fn topics_ready(
    kafka: &KafkaSettings,
    shutdown: &watch::Receiver<bool>,
) -> Result<bool, DistributedError> {
    tracing::info!(brokers = %kafka.brokers, "Checking the Kafka topics.");
    tokio::select! {
        biased;
        _ = until_true(shutdown.clone()) => Ok(false),
        ready = kafka.ensure_topics() => match ready {
            Ok(()) => Ok(true),
            Err(source) => Err(DistributedError::Broker {
                brokers: kafka.brokers.clone(),
                source,
            }),
        },
    }
}

/// How often a consuming stage checks that no partition of its group is left behind.
const PARTITION_WATCH: Duration = Duration::from_secs(10);
/// Checks in a row with stuck partitions before the stage leaves and re-joins its group.
const REJOIN_AFTER: u32 = 3;

/// A group can leave partitions behind: a member restarted within the dead one's session got
/// no partitions, or some of them, while the rest stayed with a member that no longer exists
/// (seen in the fault-injection runs: a `diff` owning 2 of 6 partitions, the other 4 with lag and
/// no commits for minutes). Every [`PARTITION_WATCH`] this looks at the group's committed
/// offsets: partitions this stage does not own that have lag and no new commit since the last
/// look are stuck, unless this stage is stuck too (then the cause is downstream, e.g. a store
/// away, and re-joining would not help). While some are stuck it warns, reports not ready
/// (`stalled`), and after [`REJOIN_AFTER`] checks in a row leaves and re-joins the group.
fn watch_partitions<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    consumer: Arc<RecordConsumer<T>>,
    stalled: Arc<std::sync::atomic::AtomicBool>,
    shutdown: watch::Receiver<bool>,
) {
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut stuck_checks = 0u32;
        let mut previous: HashMap<i32, i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = until_true(shutdown.clone()) => return,
                _ = tokio::time::sleep(PARTITION_WATCH) => {}
            }
            let owned: Vec<i32> = consumer
                .assignment()
                .map(|a| a.into_iter().map(|(_, p)| p).collect())
                .unwrap_or_default();
            let c = consumer.clone();
            let Some(progress) =
                tokio::task::spawn_blocking(move || c.group_progress(Duration::from_secs(5)))
                    .await
                    .ok()
                    .and_then(Result::ok)
            else {
                continue;
            };
            let moved = |p: &shadowdiff_kafka::PartitionProgress| {
                previous.get(&p.partition).is_none_or(|&c| c != p.committed)
            };
            // Partitions nobody works on: lag, and no commit since the last look, owned by
            // another member (or by none).
            let stuck: Vec<i32> = progress
                .iter()
                .filter(|p| !owned.contains(&p.partition) && p.lag > 0 && !moved(p))
                .map(|p| p.partition)
                .collect();
            // This member is not stalled itself (nothing to do, or its own partitions move):
            // when every partition stands still the cause is downstream (a store away), and
            // re-joining would not help.
            let free = owned.iter().all(|o| {
                progress
                    .iter()
                    .find(|p| p.partition == *o)
                    .is_none_or(|p| p.lag == 0 || moved(p))
            });
            previous = progress
                .iter()
                .map(|p| (p.partition, p.committed))
                .collect();
            if stuck.is_empty() || !free {
                stuck_checks = 0;
                stalled.store(false, Ordering::Relaxed);
                continue;
            }
            stuck_checks += 1;
            stalled.store(true, Ordering::Relaxed);
            let lag: i64 = progress
                .iter()
                .filter(|p| stuck.contains(&p.partition))
                .map(|p| p.lag)
                .sum();
            tracing::warn!(
                topic = consumer.topic(),
                lag,
                ?stuck,
                owned = owned.len(),
                checks = stuck_checks,
                "Partitions with lag make no progress and this stage does not own them."
            );
            if stuck_checks >= REJOIN_AFTER {
                tracing::warn!(
                    topic = consumer.topic(),
                    "Leaving and re-joining the group."
                );
                if let Err(error) = consumer.rejoin() {
                    tracing::error!(%error, "Could not re-join the group.");
                }
                stuck_checks = 0;
            }
        }
    });
}

/// Not ready while [`watch_partitions`] finds the stage idle with lag in its group.
fn partitions_check(stalled: Arc<std::sync::atomic::AtomicBool>) -> ReadyCheck {
    ReadyCheck {
        name: "kafka partitions".to_string(),
        check: Arc::new(move || {
            let stalled = stalled.clone();
            Box::pin(async move {
                if stalled.load(std::sync::atomic::Ordering::Relaxed) {
                    Err(
                        "partitions with lag make no progress and this stage does not own them"
                            .to_string(),
                    )
                } else {
                    Ok(())
                }
            })
        }),
    }
}

/// The tap's producer: its local queue is the capture queue here, so it gets the same byte
/// bound as the embedded pipeline's queue (librdkafka counts KiB, at most `i32::MAX`).
fn capture_producer_config(kafka: &KafkaSettings, max_bytes: u64) -> ProducerConfig {
    let mut c = kafka.producer(&kafka.exchanges_topic);
    c.queue_max_kbytes = u32::try_from(max_bytes / 1024)
        .unwrap_or(u32::MAX)
        .clamp(1, i32::MAX as u32);
    c
}

async fn admin(
    common: &CommonSettings,
    checks: Vec<ReadyCheck>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DistributedError> {
    if let Some(addr) = common.admin {
        start_admin(addr, checks, until_true(shutdown))
            .await
            .map_err(|source| DistributedError::Bind { addr, source })?;
    }
    Ok(())
}

/// The tap's sink in the distributed deployment: the Kafka producer's local queue.
struct KafkaExchangeSink {
    producer: ExchangeProducer,
    routes: RouteInferrer,
    stats: Arc<PipelineStats>,
}

impl ExchangeSink for KafkaExchangeSink {
    fn offer(&self, exchange: Exchange) -> Result<(), OfferError> {
        let route = self.routes.route(&exchange.request.uri);
        let result = self
            .producer
            .try_send(&exchange, &route)
            .map_err(|e| match e {
                ProduceError::QueueFull => OfferError::Full,
                other => OfferError::Rejected(other.to_string()),
            });
        self.stats.count_offer(&result);
        result
    }
}

/// `shadowdiff capture --kafka`: the tap, publishing exchanges. Returns after `shutdown` and a
/// flush of the producer.
pub async fn run_capture(
    common: CommonSettings,
    tap: TapSettings,
    kafka: KafkaSettings,
    shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<Arc<PipelineStats>, DistributedError> {
    let stats = Arc::new(PipelineStats::default());
    // The admin endpoint first: while the broker is awaited, /healthz answers and /readyz says
    // what is missing.
    admin(
        &common,
        vec![
            ReadyCheck::tcp("control", tap.control_addr()),
            ReadyCheck::tcp("kafka", kafka.first_broker()),
        ],
        shutdown.clone(),
    )
    .await?;
    if !topics_ready(&kafka, &shutdown).await? {
        log_capture_ledger(&stats, 0, 0, 0);
        return Ok(stats);
    }
    let sink = Arc::new(KafkaExchangeSink {
        producer: ExchangeProducer::new(&capture_producer_config(&kafka, tap.queue_max_bytes))?,
        routes: common.routes.clone(),
        stats: stats.clone(),
    });
    // Secrets are redacted before an exchange leaves the tap.
    let tap_sink: Arc<dyn ExchangeSink> = Arc::new(RedactingSink::new(
        Arc::new(tap.redactor.clone()),
        sink.clone(),
    ));
    let (listener, addr) = shadowdiff_net::server::bind(tap.listen)
        .await
        .map_err(|source| DistributedError::Bind {
            addr: tap.listen,
            source,
        })?;
    tracing::info!(%addr, topic = %kafka.exchanges_topic, "Tap listening; publishing to Kafka.");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let grace = common.shutdown_grace;
    tap.build(tap_sink)
        .map_err(PipelineError::from)?
        .serve(listener, tap.threads, until_true(shutdown), grace)
        .await
        .map_err(DistributedError::TapThreads)?;
    // Everything the tap accepted is in the producer's queue: flush it before exiting.
    let flushed = tokio::task::spawn_blocking({
        let sink = sink.clone();
        let grace = grace.max(Duration::from_secs(1));
        move || sink.producer.flush(grace)
    })
    .await?;
    if let Err(error) = flushed {
        tracing::error!(%error, "Producer flush did not finish; unacknowledged exchanges may be lost.");
    }
    let (delivered, delivery_failed) = sink.producer.delivery_counts();
    let unflushed = u64::try_from(sink.producer.in_flight()).unwrap_or(0);
    log_capture_ledger(&stats, delivered, delivery_failed, unflushed);
    // The process exits next. Destroying a librdkafka producer waits for its requests to a
    // broker that may not answer (past a minute in the fault-injection runs, where the pod
    // would be killed first); what could be delivered was flushed above and the rest counted,
    // so the handle is destroyed on a thread of its own that the exit does not wait for.
    let _ = std::thread::Builder::new()
        .name("shadowdiff-producer-close".to_string())
        .spawn(move || drop(sink));
    Ok(stats)
}

/// Where every exchange the tap offered went, logged once at stop for operators and for the
/// fault-injection checker (cli/tests/faults.rs): offered = accepted + dropped, and accepted =
/// delivered + delivery_failed + unflushed (still queued when the flush gave up).
fn log_capture_ledger(stats: &PipelineStats, delivered: u64, delivery_failed: u64, unflushed: u64) {
    let g = PipelineStats::get;
    tracing::info!(
        accepted = g(&stats.captured),
        dropped_queue_full = g(&stats.dropped_queue_full),
        dropped_other = g(&stats.dropped_other),
        delivered,
        delivery_failed,
        unflushed,
        "Capture ledger."
    );
}

/// `shadowdiff replay --kafka`: consumes exchanges, replays them, publishes results: the same
/// replay runner as `run`, on the Kafka transport (an exchange is acknowledged once the broker
/// acknowledged its result).
pub async fn run_replay(
    common: CommonSettings,
    replay: ReplaySettings,
    kafka: KafkaSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<PipelineStats>, DistributedError> {
    let stats = Arc::new(PipelineStats::default());
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    admin(
        &common,
        vec![
            ReadyCheck::tcp("kafka", kafka.first_broker()),
            partitions_check(stalled.clone()),
        ],
        shutdown.clone(),
    )
    .await?;
    if !topics_ready(&kafka, &shutdown).await? {
        return Ok(stats);
    }
    let consumer: RecordConsumer<Exchange> =
        RecordConsumer::new(&kafka.consumer(&kafka.exchanges_topic, &kafka.replay_group))?;
    let producer = Arc::new(ResultProducer::new(&kafka.producer(&kafka.results_topic))?);
    // Credentials, the sandbox's side-effect log (replay.sandbox_url) and response redaction,
    // exactly as `run` builds it.
    let replayer = Arc::new(replay.build(None)?);
    tracing::info!(topic = %kafka.exchanges_topic, group = %kafka.replay_group, "Replaying from Kafka.");

    let input = KafkaInput::new(
        consumer,
        ByteBudget::new(replay.queue_max_bytes),
        exchange_bytes,
        shutdown.clone(),
    );
    let consumer = input.consumer();
    watch_partitions(consumer.clone(), stalled, shutdown.clone());
    let ended = run_replay_stage(
        input,
        replayer,
        replay.concurrency,
        Pacer::new(replay.pacing, replay.max_rate),
        KafkaResultOutput::new(producer.clone(), shutdown),
        stats.clone(),
    )
    .await;
    let _ = tokio::task::spawn_blocking({
        let producer = producer.clone();
        move || producer.flush(Duration::from_secs(10))
    })
    .await;
    // What was acknowledged is committed; the rest is delivered again.
    if let Err(error) = consumer.commit() {
        tracing::warn!(%error, "Final offset commit failed; some exchanges will be replayed again.");
    }
    ended?;
    Ok(stats)
}

/// `shadowdiff diff --kafka --clickhouse`: consumes replay results, diffs them, writes rows: the
/// same differ pool and store writer as `run`, on the Kafka transport (a result is acknowledged
/// once its rows are committed in ClickHouse).
pub async fn run_diff(
    common: CommonSettings,
    diff: DiffSettings,
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<PipelineStats>, DistributedError> {
    let store = ClickHouseStore::new(&clickhouse.config)?;
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    admin(
        &common,
        vec![
            ReadyCheck::tcp("kafka", kafka.first_broker()),
            ReadyCheck::tcp("clickhouse", clickhouse.addr()),
            partitions_check(stalled.clone()),
        ],
        shutdown.clone(),
    )
    .await?;
    // The schema is created or upgraded at start; wait for ClickHouse if it is not up yet.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        // SIGTERM is honoured while migrating too (waiting for another process's lock, or a
        // ClickHouse that is not up): the lock's heartbeat stops with the cancelled migration.
        let migrated = tokio::select! {
            migrated = store.migrate() => migrated,
            _ = until_true(shutdown.clone()) => return Ok(Arc::new(PipelineStats::default())),
        };
        match migrated {
            Ok(applied) => {
                if !applied.is_empty() {
                    tracing::info!(?applied, "Applied ClickHouse migrations.");
                }
                break;
            }
            // Something answered, but not as ClickHouse does (another service on that port, a
            // proxy's error page): retrying would not help, and would keep POSTing to it.
            Err(source @ shadowdiff_clickhouse::Error::Query { .. }) => {
                return Err(DistributedError::NotClickHouse {
                    url: clickhouse.config.url.clone(),
                    source,
                });
            }
            Err(error) => {
                if *shutdown.borrow() {
                    return Err(error.into());
                }
                let delay = backoff.next_delay();
                tracing::warn!(url = %clickhouse.config.url, %error, retry_in_ms = delay.as_millis() as u64, "ClickHouse not ready; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = until_true(shutdown.clone()) => {}
                }
            }
        }
    }
    if !topics_ready(&kafka, &shutdown).await? {
        return Ok(Arc::new(PipelineStats::default()));
    }
    let consumer: RecordConsumer<ReplayResult> =
        RecordConsumer::new(&kafka.consumer(&kafka.results_topic, &kafka.diff_group))?;
    let stats = Arc::new(PipelineStats::default());
    tracing::info!(topic = %kafka.results_topic, group = %kafka.diff_group, database = %clickhouse.config.database, workers = diff.workers, "Diffing from Kafka into ClickHouse.");

    // The writer is a thread of its own: the sink runs its inserts on a runtime of its own.
    let sink = ClickHouseSink::with_own_runtime(store)?;
    let policy = BatchPolicy {
        rows: clickhouse.batch.rows,
        linger: clickhouse.batch.linger,
    };
    let (results, workers) = DiffWorkers::start(
        Arc::new(diff.build()),
        diff.workers,
        diff.result_queue,
        Box::new(sink),
        policy,
        Some(shutdown.clone()),
        stats.clone(),
    )
    .map_err(PipelineError::Thread)?;
    let input = KafkaInput::new(
        consumer,
        ByteBudget::new(diff.queue_max_bytes),
        result_bytes,
        shutdown.clone(),
    );
    watch_partitions(input.consumer(), stalled, shutdown);
    let (input, ended) = DiffWorkers::feed(input, results).await;
    // Every result taken is diffed and written (or given up unacknowledged) before the commit.
    workers.join().await;
    if let Err(error) = input.consumer().commit() {
        tracing::warn!(%error, "Final offset commit failed; some results will be diffed again.");
    }
    ended?;
    Ok(stats)
}

/// Runs `f` with a shutdown channel driven by `signal`.
pub async fn with_shutdown<F, Fut, T>(signal: impl Future<Output = ()> + Send + 'static, f: F) -> T
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = T>,
{
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    f(rx).await
}

/// Publishes recorded exchanges (e.g. from `import`) to the exchanges topic, for `replay` and
/// `diff` processes to handle. Unlike the tap, nothing is dropped: a full producer queue is
/// waited on. Returns how many were acknowledged by the broker.
pub async fn publish_exchanges(
    kafka: &KafkaSettings,
    routes: &RouteInferrer,
    exchanges: Vec<Exchange>,
    mut progress: impl FnMut(u64),
) -> Result<u64, DistributedError> {
    kafka
        .ensure_topics()
        .await
        .map_err(|source| DistributedError::Broker {
            brokers: kafka.brokers.clone(),
            source,
        })?;
    let producer = Arc::new(ExchangeProducer::new(
        &kafka.producer(&kafka.exchanges_topic),
    )?);
    let mut offered = 0u64;
    for exchange in exchanges {
        let route = routes.route(&exchange.request.uri);
        loop {
            match producer.try_send(&exchange, &route) {
                Ok(()) => break,
                Err(ProduceError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(source) => {
                    return Err(DistributedError::NotPublished {
                        id: exchange.id.clone(),
                        source,
                    })
                }
            }
        }
        offered += 1;
        progress(offered);
    }
    let flushed = tokio::task::spawn_blocking({
        let producer = producer.clone();
        move || producer.flush(Duration::from_secs(60))
    })
    .await?;
    flushed?;
    let (delivered, failed) = producer.delivery_counts();
    if failed > 0 {
        return Err(DistributedError::Unacknowledged { failed, offered });
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_capture_producer_queue_gets_the_capture_byte_bound() {
        let mut config = Config::default();
        config.kafka.brokers = Some("127.0.0.1:9092".into());
        let kafka = config.kafka().unwrap();
        let c = capture_producer_config(&kafka, 128 * 1024 * 1024);
        assert_eq!(c.queue_max_kbytes, 131_072);
        assert_eq!(c.topic, kafka.exchanges_topic);
        // Below 1 KiB still bounds (librdkafka's minimum is 1), and a huge bound is clamped.
        assert_eq!(capture_producer_config(&kafka, 10).queue_max_kbytes, 1);
        assert_eq!(
            capture_producer_config(&kafka, u64::MAX).queue_max_kbytes,
            i32::MAX as u32
        );
    }
}
