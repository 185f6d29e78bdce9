//! The distributed deployment: `capture`, `replay` and `diff` as separate processes over Kafka,
//! results in ClickHouse. Same stages as the embedded pipeline, other transport and store.
//!
//! Delivery is at least once: the replayer acknowledges an exchange only after its result was
//! acknowledged by the broker; the differ only after its rows were committed in ClickHouse. A
//! record that is delivered twice is counted once by the report.

use crate::admin::{start_admin, ReadyCheck};
use crate::config::{ClickHouseSection, ConfigError, KafkaSection, Settings};
use crate::stages::{until_true, PipelineStats, Tap};
use shadowdiff_capture::redact::RedactingSink;
use shadowdiff_capture::{ExchangeSink, OfferError};
use shadowdiff_clickhouse::{ClickHouseConfig, ClickHouseStore};
use shadowdiff_differ::Differ;
use shadowdiff_kafka::{
    ensure_topics, ConsumerConfig, ExchangeProducer, ProduceError, ProducerConfig, RecordConsumer,
    ResultProducer,
};
use shadowdiff_model::{Exchange, ReplayResult, RouteInferrer};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Kafka: {0}")]
    Kafka(#[from] shadowdiff_kafka::Error),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] shadowdiff_clickhouse::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Stage(String),
}

/// Broker list from `--kafka` or `[kafka] brokers`.
pub fn brokers(kafka: &KafkaSection) -> Result<String, ConfigError> {
    match kafka.brokers.as_deref().map(str::trim) {
        Some(b) if !b.is_empty() => Ok(b.to_string()),
        _ => Err(ConfigError::Invalid {
            key: "kafka.brokers (--kafka)".to_string(),
            message: "is required: comma-separated host:port list, e.g. --kafka 127.0.0.1:9092"
                .to_string(),
        }),
    }
}

/// ClickHouse settings from `--clickhouse` or `[clickhouse]`.
pub fn clickhouse_config(section: &ClickHouseSection) -> Result<ClickHouseConfig, ConfigError> {
    let url = section
        .url
        .as_deref()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .ok_or_else(|| ConfigError::Invalid {
            key: "clickhouse.url (--clickhouse)".to_string(),
            message: format!(
                "{} is not a ClickHouse HTTP URL; use e.g. --clickhouse http://127.0.0.1:8123",
                section
                    .url
                    .as_deref()
                    .map_or("nothing".to_string(), |u| format!("`{u}`"))
            ),
        })?;
    let mut config = ClickHouseConfig::new(url).with_database(section.database.clone());
    config.user = section.user.clone();
    config.password = section.password.clone();
    Ok(config)
}

fn producer_config(kafka: &KafkaSection, brokers: &str, topic: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(brokers, topic);
    c.message_max_bytes = kafka.message_max_bytes;
    c.librdkafka_options = kafka.options.clone();
    c
}

/// The tap's producer: its local queue is the capture queue here, so it gets the same byte
/// bound as the embedded pipeline's queue (librdkafka counts KiB, at most `i32::MAX`).
fn capture_producer_config(kafka: &KafkaSection, brokers: &str, max_bytes: u64) -> ProducerConfig {
    let mut c = producer_config(kafka, brokers, &kafka.exchanges_topic);
    c.queue_max_kbytes = u32::try_from(max_bytes / 1024)
        .unwrap_or(u32::MAX)
        .clamp(1, i32::MAX as u32);
    c
}

fn consumer_config(
    kafka: &KafkaSection,
    brokers: &str,
    topic: &str,
    group: &str,
) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(brokers, topic, group);
    if kafka.dead_letter {
        c = c.with_default_dead_letter_topic();
    }
    c.librdkafka_options = kafka.options.clone();
    c
}

fn first_broker(brokers: &str) -> String {
    brokers.split(',').next().unwrap_or("").trim().to_string()
}

fn clickhouse_addr(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host = rest.split('/').next().unwrap_or(rest);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:8123")
    }
}

async fn topics(kafka: &KafkaSection, brokers: &str) -> Result<(), DistributedError> {
    let mut list = vec![
        (kafka.exchanges_topic.clone(), kafka.partitions),
        (kafka.results_topic.clone(), kafka.partitions),
    ];
    if kafka.dead_letter {
        list.push((
            shadowdiff_kafka::dead_letter_topic(&kafka.exchanges_topic),
            1,
        ));
        list.push((shadowdiff_kafka::dead_letter_topic(&kafka.results_topic), 1));
    }
    let refs: Vec<(&str, i32)> = list.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    ensure_topics(brokers, &refs).await?;
    Ok(())
}

async fn admin(
    settings: &Settings,
    checks: Vec<ReadyCheck>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DistributedError> {
    if let Some(addr) = settings.admin {
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
    settings: Settings,
    kafka: KafkaSection,
    shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<Arc<PipelineStats>, DistributedError> {
    let brokers = brokers(&kafka)?;
    topics(&kafka, &brokers).await?;
    let stats = Arc::new(PipelineStats::default());
    let sink = Arc::new(KafkaExchangeSink {
        producer: ExchangeProducer::new(&capture_producer_config(
            &kafka,
            &brokers,
            settings.queue_max_bytes,
        ))?,
        routes: settings.routes.clone(),
        stats: stats.clone(),
    });
    // Secrets are redacted before an exchange leaves the tap.
    let tap_sink: Arc<dyn ExchangeSink> = Arc::new(RedactingSink::new(
        Arc::new(settings.redactor.clone()),
        sink.clone(),
    ));
    let (listener, addr) = shadowdiff_capture::server::bind(settings.listen)
        .await
        .map_err(|source| DistributedError::Bind {
            addr: settings.listen,
            source,
        })?;
    let control = settings
        .control
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    admin(
        &settings,
        vec![
            ReadyCheck::tcp("control", control),
            ReadyCheck::tcp("kafka", first_broker(&brokers)),
        ],
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, topic = %kafka.exchanges_topic, "Tap listening; publishing to Kafka.");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let grace = settings.shutdown_grace;
    Tap::new(&settings, tap_sink)
        .map_err(|e| DistributedError::Stage(e.to_string()))?
        .serve(listener, settings.tap_threads, until_true(shutdown), grace)
        .await
        .map_err(|e| DistributedError::Stage(format!("tap threads: {e}")))?;
    // Everything the tap accepted is in the producer's queue: flush it before exiting.
    let flushed = tokio::task::spawn_blocking({
        let sink = sink.clone();
        let grace = settings.shutdown_grace.max(Duration::from_secs(1));
        move || sink.producer.flush(grace)
    })
    .await
    .map_err(|e| DistributedError::Stage(e.to_string()))?;
    if let Err(error) = flushed {
        tracing::error!(%error, "Producer flush did not finish; unacknowledged exchanges may be lost.");
    }
    Ok(stats)
}

/// `shadowdiff replay --kafka`: consumes exchanges, replays them, publishes results.
pub async fn run_replay(
    settings: Settings,
    kafka: KafkaSection,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<PipelineStats>, DistributedError> {
    let brokers = brokers(&kafka)?;
    topics(&kafka, &brokers).await?;
    let stats = Arc::new(PipelineStats::default());
    let consumer: RecordConsumer<Exchange> = RecordConsumer::new(&consumer_config(
        &kafka,
        &brokers,
        &kafka.exchanges_topic,
        &kafka.replay_group,
    ))?;
    let producer = Arc::new(ResultProducer::new(&producer_config(
        &kafka,
        &brokers,
        &kafka.results_topic,
    ))?);
    // Credentials, the sandbox's side-effect log (replay.sandbox_url) and response redaction,
    // exactly as `run` builds it.
    let replayer = Arc::new(
        crate::offline::build_replayer(&settings, None)
            .map_err(|e| DistributedError::Stage(e.to_string()))?,
    );
    admin(
        &settings,
        vec![ReadyCheck::tcp("kafka", first_broker(&brokers))],
        shutdown.clone(),
    )
    .await?;
    tracing::info!(topic = %kafka.exchanges_topic, group = %kafka.replay_group, "Replaying from Kafka.");

    let concurrency = settings.replay_concurrency;
    let permits = Arc::new(Semaphore::new(concurrency));
    let stop = shutdown.clone();
    loop {
        let permit = tokio::select! {
            _ = until_true(stop.clone()) => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (exchange, delivery) = tokio::select! {
            _ = until_true(stop.clone()) => break,
            next = consumer.recv() => next?,
        };
        let (replayer, producer, stats, stop_rx) = (
            replayer.clone(),
            producer.clone(),
            stats.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let span = tracing::info_span!("exchange", id = %exchange.id);
            let _entered = span.enter();
            let result = replayer.replay(exchange).await;
            let counter = if result.blocked.is_some() {
                &stats.blocked
            } else {
                &stats.replayed
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if publish_with_retry(&producer, &result, stop_rx).await {
                delivery.ack();
            }
            drop(permit);
        });
    }
    // Finish in-flight replays; their acknowledgements are committed on close.
    let _ = permits.acquire_many(concurrency as u32).await;
    let _ = tokio::task::spawn_blocking({
        let producer = producer.clone();
        move || producer.flush(Duration::from_secs(10))
    })
    .await;
    if let Err(error) = consumer.commit() {
        tracing::warn!(%error, "Final offset commit failed; some exchanges will be replayed again.");
    }
    Ok(stats)
}

/// Publishes a result, retrying with backoff until it is acknowledged. Returns false (the
/// exchange stays unacknowledged and is replayed again later) only when shutting down.
async fn publish_with_retry(
    producer: &ResultProducer,
    result: &ReplayResult,
    stop: watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        match producer.send(result).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(%error, exchange_id = %result.exchange.id, "Publishing a replay result failed; retrying.");
                if *stop.borrow() && started.elapsed() > Duration::from_secs(5) {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `shadowdiff diff --kafka --clickhouse`: consumes replay results, diffs them, writes rows.
pub async fn run_diff(
    settings: Settings,
    kafka: KafkaSection,
    clickhouse: ClickHouseSection,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<PipelineStats>, DistributedError> {
    let brokers = brokers(&kafka)?;
    let ch_config = clickhouse_config(&clickhouse)?;
    let store = ClickHouseStore::new(&ch_config)?;
    admin(
        &settings,
        vec![
            ReadyCheck::tcp("kafka", first_broker(&brokers)),
            ReadyCheck::tcp("clickhouse", clickhouse_addr(&ch_config.url)),
        ],
        shutdown.clone(),
    )
    .await?;
    // The schema is created or upgraded at start; wait for ClickHouse if it is not up yet.
    let mut backoff = Duration::from_millis(200);
    loop {
        match store.migrate().await {
            Ok(applied) => {
                if !applied.is_empty() {
                    tracing::info!(?applied, "Applied ClickHouse migrations.");
                }
                break;
            }
            Err(error) => {
                if *shutdown.borrow() {
                    return Err(error.into());
                }
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "ClickHouse not ready; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    topics(&kafka, &brokers).await?;
    let consumer: RecordConsumer<ReplayResult> = RecordConsumer::new(&consumer_config(
        &kafka,
        &brokers,
        &kafka.results_topic,
        &kafka.diff_group,
    ))?;
    let differ = Differ::new(settings.rules.clone(), settings.routes.clone());
    let stats = Arc::new(PipelineStats::default());
    tracing::info!(topic = %kafka.results_topic, group = %kafka.diff_group, database = %ch_config.database, "Diffing from Kafka into ClickHouse.");

    let linger = Duration::from_millis(clickhouse.batch_linger_ms.max(1));
    let max_rows = clickhouse.batch_rows.max(1);
    let mut stopping = false;
    while !stopping {
        let mut rows = Vec::new();
        let mut deliveries = Vec::new();
        let deadline = tokio::time::Instant::now() + linger;
        while rows.len() < max_rows {
            tokio::select! {
                _ = until_true(shutdown.clone()) => { stopping = true; break; }
                _ = tokio::time::sleep_until(deadline) => break,
                next = consumer.recv() => {
                    let (result, delivery) = next?;
                    let started = std::time::Instant::now();
                    let records = tokio::task::block_in_place(|| differ.diff(&result));
                    crate::telemetry::diffed(&records, started.elapsed().as_secs_f64());
                    crate::stages::count_outcomes(&records, &stats);
                    rows.extend(records);
                    deliveries.push(delivery);
                }
            }
        }
        if deliveries.is_empty() {
            continue;
        }
        if insert_with_retry(&store, &rows, &stats, shutdown.clone()).await {
            // Rows are committed: only now may the results be acknowledged.
            for d in deliveries {
                d.ack();
            }
        } else {
            tracing::warn!(
                results = deliveries.len(),
                "Stopping with rows not stored; their results will be delivered again."
            );
        }
    }
    if let Err(error) = consumer.commit() {
        tracing::warn!(%error, "Final offset commit failed; some results will be diffed again.");
    }
    Ok(stats)
}

/// Inserts rows, retrying with backoff while ClickHouse is away. Returns false only when asked
/// to stop while still failing.
async fn insert_with_retry(
    store: &ClickHouseStore,
    rows: &[shadowdiff_model::DiffRecord],
    stats: &PipelineStats,
    shutdown: watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    loop {
        match store.insert_batch(rows).await {
            Ok(()) => {
                stats
                    .records_written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                crate::telemetry::stored(rows.len());
                return true;
            }
            Err(error) => {
                stats.store_failures.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::store_failed();
                if *shutdown.borrow() {
                    return false;
                }
                tracing::warn!(%error, rows = rows.len(), retry_in_ms = backoff.as_millis() as u64, "ClickHouse insert failed; retrying, no offsets stored meanwhile.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = until_true(shutdown.clone()) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
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
    kafka: &KafkaSection,
    routes: &RouteInferrer,
    exchanges: Vec<Exchange>,
    mut progress: impl FnMut(u64),
) -> Result<u64, DistributedError> {
    let brokers = brokers(kafka)?;
    topics(kafka, &brokers).await?;
    let producer = Arc::new(ExchangeProducer::new(&producer_config(
        kafka,
        &brokers,
        &kafka.exchanges_topic,
    ))?);
    let mut offered = 0u64;
    for exchange in exchanges {
        let route = routes.route(&exchange.request.uri);
        loop {
            match producer.try_send(&exchange, &route) {
                Ok(()) => break,
                Err(ProduceError::QueueFull) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(error) => {
                    return Err(DistributedError::Stage(format!(
                        "exchange {} not published: {error}",
                        exchange.id
                    )))
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
    .await
    .map_err(|e| DistributedError::Stage(e.to_string()))?;
    flushed.map_err(|e| DistributedError::Stage(format!("flush: {e}")))?;
    let (delivered, failed) = producer.delivery_counts();
    if failed > 0 {
        return Err(DistributedError::Stage(format!(
            "{failed} of {offered} exchanges were not acknowledged by the broker"
        )));
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_producer_queue_gets_the_capture_byte_bound() {
        let kafka = KafkaSection::default();
        let c = capture_producer_config(&kafka, "127.0.0.1:9092", 128 * 1024 * 1024);
        assert_eq!(c.queue_max_kbytes, 131_072);
        assert_eq!(c.topic, kafka.exchanges_topic);
        // Below 1 KiB still bounds (librdkafka's minimum is 1), and a huge bound is clamped.
        assert_eq!(capture_producer_config(&kafka, "b", 10).queue_max_kbytes, 1);
        assert_eq!(
            capture_producer_config(&kafka, "b", u64::MAX).queue_max_kbytes,
            i32::MAX as u32
        );
    }
}
