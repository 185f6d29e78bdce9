//! The stages as reusable runners: the embedded pipeline wires them with in-memory queues; the
//! distributed commands wire the same runners to Kafka and ClickHouse.

use crate::telemetry;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use shadowdiff_differ::Differ;
use shadowdiff_model::{DiffRecord, Exchange, Outcome, ReplayResult, TargetRole};
use shadowdiff_replayer::Replayer;
use shadowdiff_store::RecordSink;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

/// Counters of one pipeline, readable by tests and the run summary.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub captured: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_other: AtomicU64,
    pub replayed: AtomicU64,
    pub blocked: AtomicU64,
    pub compared: AtomicU64,
    pub mismatched: AtomicU64,
    pub target_errors: AtomicU64,
    pub records_written: AtomicU64,
    pub store_failures: AtomicU64,
    /// Bytes of exchanges (and their replay responses) between the tap and the differ; the
    /// embedded tap refuses new exchanges beyond `capture.queue_max_bytes`.
    pub inflight_bytes: AtomicU64,
}

impl PipelineStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts what happened to an exchange the tap offered to its sink.
    pub fn count_offer(&self, result: &Result<(), shadowdiff_capture::OfferError>) {
        let counter = match result {
            Ok(()) => &self.captured,
            Err(shadowdiff_capture::OfferError::Full) => &self.dropped_queue_full,
            Err(_) => &self.dropped_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What an exchange holds on the heap, roughly: bodies, headers, URI.
pub fn exchange_bytes(exchange: &Exchange) -> u64 {
    let headers = |h: &shadowdiff_model::Headers| -> usize {
        h.iter().map(|(n, v)| n.len() + v.len() + 48).sum()
    };
    let request = &exchange.request;
    let mut bytes = 512 + request.uri.len() + request.body.bytes.len() + headers(&request.headers);
    if let Some(control) = &exchange.control {
        bytes += control.body.bytes.len() + headers(&control.headers);
    }
    bytes as u64
}

/// What the targets' responses of a replay result hold, roughly.
fn outcome_bytes(result: &ReplayResult) -> u64 {
    result
        .outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(r) => {
                256 + r.body.bytes.len()
                    + r.headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 48)
                        .sum::<usize>()
            }
            Err(e) => 256 + e.message.len(),
        })
        .sum::<usize>() as u64
}

/// Sends to a crossbeam channel from async code without blocking the runtime's thread.
pub async fn send_async<T>(tx: &Sender<T>, mut item: T) -> Result<(), T> {
    let mut wait = Duration::from_micros(200);
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(20));
            }
            Err(TrySendError::Disconnected(back)) => return Err(back),
        }
    }
}

/// Replays exchanges from `rx` with at most `concurrency` in flight and hands the results on.
/// After `close` is notified, drains what is queued, waits for in-flight work, and returns.
pub async fn run_replay_stage(
    mut rx: mpsc::Receiver<Exchange>,
    close: Arc<Notify>,
    replayer: Arc<Replayer>,
    concurrency: usize,
    results: Sender<ReplayResult>,
    stats: Arc<PipelineStats>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let capture_depth = telemetry::queue_depth("capture");
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            _ = close.notified(), if !closing => {
                // Later offers fail as `closed`; what is queued is still delivered.
                rx.close();
                closing = true;
            }
            next = rx.recv() => {
                let Some(exchange) = next else { break };
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let (replayer, results, stats) = (replayer.clone(), results.clone(), stats.clone());
                capture_depth.set(rx.len() as f64);
                // Debug level: an info span per exchange cost 2-3% of the process's CPU (the fmt
                // layer formats its fields eagerly); with RUST_LOG=debug lines still carry the id.
                let span = tracing::debug_span!("exchange", id = %exchange.id);
                tokio::spawn(tracing::Instrument::instrument(async move {
                    let result = replayer.replay(exchange).await;
                    // The tap counted the exchange; count what the targets answered too.
                    stats.inflight_bytes.fetch_add(outcome_bytes(&result), Ordering::Relaxed);
                    let counter = if result.blocked.is_some() { &stats.blocked } else { &stats.replayed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if send_async(&results, result).await.is_err() {
                        tracing::error!("Differ stage is gone; a replay result was lost.");
                    }
                    drop(permit);
                }, span));
            }
        }
    }
    // Every permit back means every spawned replay has handed its result on.
    let _ = permits.acquire_many(concurrency as u32).await;
}

/// Starts `workers` differ threads. They end when every sender of `results` is dropped.
pub fn spawn_differ_pool(
    differ: Arc<Differ>,
    workers: usize,
    results: Receiver<ReplayResult>,
    records: Sender<Vec<DiffRecord>>,
    stats: Arc<PipelineStats>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..workers.max(1))
        .filter_map(|i| {
            let (differ, results, records, stats) = (
                differ.clone(),
                results.clone(),
                records.clone(),
                stats.clone(),
            );
            std::thread::Builder::new()
                .name(format!("shadowdiff-differ-{i}"))
                // Deeply nested bodies recurse; give the differ room.
                .stack_size(16 * 1024 * 1024)
                .spawn(move || {
                    let results_depth = telemetry::queue_depth("results");
                    for result in results.iter() {
                        let _span =
                            tracing::debug_span!("exchange", id = %result.exchange.id).entered();
                        let started = Instant::now();
                        let out = differ.diff(&result);
                        let done = exchange_bytes(&result.exchange) + outcome_bytes(&result);
                        drop(result);
                        // Saturating: runners fed without the tap's accounting never went up.
                        let _ = stats.inflight_bytes.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |v| Some(v.saturating_sub(done)),
                        );
                        telemetry::diffed(&out, started.elapsed().as_secs_f64());
                        count_outcomes(&out, &stats);
                        results_depth.set(results.len() as f64);
                        if records.send(out).is_err() {
                            tracing::error!("Store writer is gone; diff records were lost.");
                            return;
                        }
                    }
                })
                .map_err(|e| tracing::error!(error = %e, "Could not start a differ thread."))
                .ok()
        })
        .collect()
}

pub(crate) fn count_outcomes(records: &[DiffRecord], stats: &PipelineStats) {
    for r in records.iter().filter(|r| r.role == TargetRole::Candidate) {
        match r.outcome {
            Outcome::Match => {
                stats.compared.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Mismatch => {
                stats.compared.fetch_add(1, Ordering::Relaxed);
                stats.mismatched.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Error => {
                stats.target_errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Blocked | Outcome::Skipped => {}
        }
    }
}

/// Batches records into the sink; retries failed writes with backoff so nothing accepted is
/// lost while the store is briefly away. Ends when every sender of `records` is dropped.
pub fn spawn_writer(
    mut sink: Box<dyn RecordSink>,
    records: Receiver<Vec<DiffRecord>>,
    stats: Arc<PipelineStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    const BATCH: usize = 1024;
    const LINGER: Duration = Duration::from_millis(100);
    std::thread::Builder::new()
        .name("shadowdiff-writer".to_string())
        .spawn(move || {
            let mut batch: Vec<DiffRecord> = Vec::with_capacity(BATCH);
            let records_depth = telemetry::queue_depth("records");
            let mut open = true;
            while open {
                match records.recv_timeout(LINGER) {
                    Ok(more) => {
                        records_depth.set(records.len() as f64);
                        batch.extend(more);
                        if batch.len() < BATCH {
                            continue;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => open = false,
                }
                if !batch.is_empty() {
                    write_with_retry(sink.as_mut(), &batch, &stats);
                    batch.clear();
                }
            }
        })
}

fn write_with_retry(sink: &mut dyn RecordSink, batch: &[DiffRecord], stats: &PipelineStats) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match sink.write_batch(batch) {
            Ok(()) => {
                stats
                    .records_written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                telemetry::stored(batch.len());
                return;
            }
            Err(error) => {
                stats.store_failures.fetch_add(1, Ordering::Relaxed);
                telemetry::store_failed();
                tracing::warn!(%error, rows = batch.len(), retry_in_ms = backoff.as_millis() as u64, "Store write failed; retrying.");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Resolves once `rx` has seen `true` (or its sender is gone): the shutdown signal every stage
/// and server waits on.
pub async fn until_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The differ threads and the store writer behind the results queue.
pub struct DiffWorkers {
    differs: Vec<std::thread::JoinHandle<()>>,
    writer: std::thread::JoinHandle<()>,
}

impl DiffWorkers {
    /// Starts `workers` differ threads and the writer into `sink`; returns the results queue's
    /// sender. The workers end when every clone of that sender is dropped.
    pub fn start(
        differ: Arc<Differ>,
        workers: usize,
        queue: usize,
        sink: Box<dyn RecordSink>,
        stats: Arc<PipelineStats>,
    ) -> std::io::Result<(Sender<ReplayResult>, Self)> {
        let (results_tx, results_rx) = crossbeam_channel::bounded(queue);
        let (records_tx, records_rx) = crossbeam_channel::bounded(queue);
        let writer = spawn_writer(sink, records_rx, stats.clone())?;
        let differs = spawn_differ_pool(differ, workers, results_rx, records_tx, stats);
        Ok((results_tx, Self { differs, writer }))
    }

    /// Waits, off the async runtime, for the differ threads and then the writer to finish.
    pub async fn join(self) {
        let Self { differs, writer } = self;
        let _ = tokio::task::spawn_blocking(move || {
            for d in differs {
                let _ = d.join();
            }
            let _ = writer.join();
        })
        .await;
    }
}

/// The tap in either mode: a tee proxy in front of the control, or a mirror receiver.
pub enum Tap {
    Tee(shadowdiff_capture::TeeProxy),
    Mirror(shadowdiff_capture::mirror::MirrorReceiver),
}

impl Tap {
    /// The tap `settings.mode` asks for, handing its copies to `sink`.
    pub fn new(
        settings: &crate::config::Settings,
        sink: Arc<dyn shadowdiff_capture::ExchangeSink>,
    ) -> Result<Self, shadowdiff_capture::CaptureError> {
        Ok(match settings.mode {
            crate::config::CaptureMode::Tee => Self::Tee(
                shadowdiff_capture::TeeProxy::new(settings.tee_config(), sink)?
                    .with_sampler(settings.sampler.clone()),
            ),
            crate::config::CaptureMode::Mirror => {
                Self::Mirror(shadowdiff_capture::mirror::MirrorReceiver::with_sampler(
                    settings.mirror_config(),
                    sink,
                    settings.sampler.clone(),
                ))
            }
        })
    }

    /// Serves on `threads` serving threads (`capture.threads`) until `shutdown`, then drains.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        threads: usize,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) -> std::io::Result<()> {
        use shadowdiff_capture::server::{serve_connections_on_threads, serve_on_threads};
        match self {
            // Each thread gets its own connections to the control; HTTP/1.1 goes through the
            // tap's relay, anything else through hyper.
            Self::Tee(proxy) => {
                serve_connections_on_threads(
                    listener,
                    threads,
                    move || proxy.for_thread(),
                    shutdown,
                    grace,
                )
                .await
            }
            Self::Mirror(receiver) => {
                serve_on_threads(listener, threads, move || receiver.clone(), shutdown, grace).await
            }
        }
    }
}
