//! Where run results go: tracing, memory, metrics, or `DiffRecord`s for the store.

use crate::result::{CandidateOutcome, RunResult};
use crossbeam_channel::{Sender, TrySendError};
use shadowdiff_model::{
    fingerprint, DiffRecord, NoiseDifference, Outcome, TargetRole, SCHEMA_VERSION,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;

/// Why a publisher could not take a run. Logged and counted; never seen by the caller.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The publisher's queue is full; the run is dropped.
    #[error("publisher queue is full; run dropped")]
    Full,
    /// Any other failure of the publisher.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Receives every sampled-in run. Called on the caller's thread (sync and join modes) or in the
/// background task (detached mode), after the control finished; keep it cheap.
///
/// Errors and panics are caught, logged and counted; they never reach the experiment's caller.
pub trait Publisher: Send + Sync {
    /// Takes one sampled-in run.
    fn publish(&self, run: &RunResult) -> Result<(), PublishError>;

    /// A detached run was shed because the in-flight bound was reached.
    fn shed(&self, _experiment: &'static str) {}
}

impl<P: Publisher + ?Sized> Publisher for Arc<P> {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        (**self).publish(run)
    }
    fn shed(&self, experiment: &'static str) {
        (**self).shed(experiment)
    }
}

fn default_slot() -> &'static RwLock<Arc<dyn Publisher>> {
    static SLOT: OnceLock<RwLock<Arc<dyn Publisher>>> = OnceLock::new();
    SLOT.get_or_init(|| RwLock::new(Arc::new(TracingPublisher)))
}

/// Sets the publisher used by experiments that were not given one (default: [`TracingPublisher`]).
pub fn set_default_publisher(publisher: Arc<dyn Publisher>) {
    *default_slot().write().unwrap_or_else(|e| e.into_inner()) = publisher;
}

pub(crate) fn default_publisher() -> Arc<dyn Publisher> {
    default_slot()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

static PUBLISH_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Publishing attempts that returned an error or panicked, since start.
pub fn publish_failures() -> u64 {
    PUBLISH_FAILURES.load(Ordering::Relaxed)
}

/// Publishes without letting an error or a panic escape.
pub(crate) fn publish_guarded(publisher: &dyn Publisher, run: &RunResult) {
    match catch_unwind(AssertUnwindSafe(|| publisher.publish(run))) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            PUBLISH_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(experiment = run.experiment, %error, "Experiment result not published.");
        }
        Err(_) => {
            PUBLISH_FAILURES.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                experiment = run.experiment,
                "Experiment publisher panicked."
            );
        }
    }
}

pub(crate) fn shed_guarded(publisher: &dyn Publisher, experiment: &'static str) {
    if catch_unwind(AssertUnwindSafe(|| publisher.shed(experiment))).is_err() {
        PUBLISH_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Discards everything (benchmarks, or experiments whose only output is metrics via `after_run`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopPublisher;

impl Publisher for NoopPublisher {
    fn publish(&self, _: &RunResult) -> Result<(), PublishError> {
        Ok(())
    }
}

/// One `tracing` event per candidate: debug for a match, warn for anything else.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingPublisher;

impl Publisher for TracingPublisher {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        for c in &run.candidates {
            let paths: Vec<&str> = c.differences.iter().map(|d| d.path.as_str()).collect();
            if c.outcome.is_failure() {
                tracing::warn!(
                    experiment = run.experiment,
                    candidate = c.name,
                    outcome = c.outcome.as_str(),
                    detail = c.detail.as_deref(),
                    ?paths,
                    control_us = run.control.wall.as_micros() as u64,
                    candidate_us = c.wall.as_micros() as u64,
                    "Experiment candidate disagreed with the control."
                );
            } else {
                tracing::debug!(
                    experiment = run.experiment,
                    candidate = c.name,
                    outcome = c.outcome.as_str(),
                    "Experiment candidate agreed with the control."
                );
            }
        }
        Ok(())
    }

    fn shed(&self, experiment: &'static str) {
        tracing::debug!(experiment, "Experiment run shed: too many in flight.");
    }
}

/// Keeps every run in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryPublisher {
    runs: Mutex<Vec<RunResult>>,
    shed: AtomicU64,
}

impl MemoryPublisher {
    /// An empty publisher, shared: give a clone to the experiment, keep one to read the runs.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A copy of every run published so far.
    pub fn runs(&self) -> Vec<RunResult> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Removes and returns every run published so far.
    pub fn take(&self) -> Vec<RunResult> {
        std::mem::take(&mut *self.runs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Detached runs shed so far because the in-flight bound was reached.
    pub fn shed_count(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

impl Publisher for MemoryPublisher {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(run.clone());
        Ok(())
    }

    fn shed(&self, _: &'static str) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters through the `metrics` facade, labelled by `experiment` (and `candidate`):
/// `shadowdiff_experiment_runs_total`, `_mismatches_total`, `_candidate_errors_total`
/// (errors and panics), `_timeouts_total`, `_shed_total`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsPublisher;

impl Publisher for MetricsPublisher {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        metrics::counter!("shadowdiff_experiment_runs_total", "experiment" => run.experiment)
            .increment(1);
        for c in &run.candidates {
            let name = match c.outcome {
                CandidateOutcome::Mismatched => "shadowdiff_experiment_mismatches_total",
                CandidateOutcome::Error | CandidateOutcome::Panic => {
                    "shadowdiff_experiment_candidate_errors_total"
                }
                CandidateOutcome::Timeout => "shadowdiff_experiment_timeouts_total",
                CandidateOutcome::Matched | CandidateOutcome::Ignored => continue,
            };
            metrics::counter!(name, "experiment" => run.experiment, "candidate" => c.name)
                .increment(1);
        }
        Ok(())
    }

    fn shed(&self, experiment: &'static str) {
        metrics::counter!("shadowdiff_experiment_shed_total", "experiment" => experiment)
            .increment(1);
    }
}

/// Fans one run out to several publishers.
pub struct FanoutPublisher(pub Vec<Arc<dyn Publisher>>);

impl Publisher for FanoutPublisher {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        for p in &self.0 {
            publish_guarded(p.as_ref(), run);
        }
        Ok(())
    }
    fn shed(&self, experiment: &'static str) {
        for p in &self.0 {
            shed_guarded(p.as_ref(), experiment);
        }
    }
}

/// Converts runs into [`DiffRecord`]s (one per candidate; method `FN`, route = experiment name)
/// and hands batches to a sink on a background thread, so that library results land in the
/// same store, report and gate as HTTP endpoints.
///
/// The queue is bounded: when it is full, records are dropped and counted, never waited for.
/// Dropping the publisher flushes what is queued and joins the thread.
pub struct RecordPublisher {
    tx: Option<Sender<DiffRecord>>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Most records handed to the sink at once.
const MAX_BATCH: usize = 512;

impl RecordPublisher {
    /// `capacity` records may wait; `sink` receives non-empty batches in order.
    pub fn new<S>(capacity: usize, sink: S) -> Self
    where
        S: Fn(Vec<DiffRecord>) + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded::<DiffRecord>(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("shadowdiff-records".to_string())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    // A panicking sink loses its batch, not the thread.
                    if catch_unwind(AssertUnwindSafe(|| sink(batch))).is_err() {
                        PUBLISH_FAILURES.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("Experiment record sink panicked; batch lost.");
                    }
                }
            })
            .ok();
        Self {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
            thread,
        }
    }

    /// Records dropped because the queue was full (or the thread could not start).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The records one run becomes.
    pub fn records(run: &RunResult) -> Vec<DiffRecord> {
        run.candidates
            .iter()
            .map(|c| {
                let (outcome, differences, noise) = match c.outcome {
                    CandidateOutcome::Matched => (Outcome::Match, c.differences.clone(), vec![]),
                    CandidateOutcome::Mismatched => {
                        (Outcome::Mismatch, c.differences.clone(), vec![])
                    }
                    // Accepted differences are kept, as noise with the rule that accepted them.
                    CandidateOutcome::Ignored => (
                        Outcome::Match,
                        vec![],
                        c.differences
                            .iter()
                            .map(|d| NoiseDifference {
                                difference: d.clone(),
                                reason: "rule:ignore".to_string(),
                            })
                            .collect(),
                    ),
                    CandidateOutcome::Error
                    | CandidateOutcome::Panic
                    | CandidateOutcome::Timeout => (Outcome::Error, c.differences.clone(), vec![]),
                };
                let detail = match (c.outcome, &c.detail) {
                    (CandidateOutcome::Panic, Some(d)) => Some(format!("panic: {d}")),
                    (CandidateOutcome::Timeout, _) => Some("timeout".to_string()),
                    (CandidateOutcome::Error, Some(d)) => Some(format!("error: {d}")),
                    (_, d) => d.clone(),
                };
                DiffRecord {
                    schema_version: SCHEMA_VERSION,
                    exchange_id: uuid::Uuid::now_v7().to_string(),
                    captured_at_ms: run.started_at_ms,
                    experiment: run.experiment.to_string(),
                    method: "FN".to_string(),
                    route: run.experiment.to_string(),
                    target: c.name.to_string(),
                    role: TargetRole::Candidate,
                    outcome,
                    control_status: None,
                    target_status: None,
                    control_latency_us: Some(run.control.wall.as_micros() as u64),
                    target_latency_us: Some(c.wall.as_micros() as u64),
                    fingerprint: fingerprint(&differences),
                    differences,
                    noise,
                    detail,
                    notes: run
                        .context
                        .iter()
                        .map(|(k, v)| format!("context {k}={v}"))
                        .collect(),
                    side_effects: vec![],
                }
            })
            .collect()
    }
}

impl Publisher for RecordPublisher {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        if self.thread.is_none() {
            self.dropped
                .fetch_add(run.candidates.len() as u64, Ordering::Relaxed);
            return Ok(());
        }
        for record in Self::records(run) {
            match tx.try_send(record) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

impl Drop for RecordPublisher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has drained the queue.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Publishes runs to ClickHouse (feature `clickhouse`), into the table the distributed `diff`
/// writes, so `shadowdiff report --clickhouse`, `gate`, `serve` and the dashboards show
/// in-process experiments beside HTTP endpoints (method `FN`, route = the experiment's name).
///
/// The same bounded, never-blocking queue as [`RecordPublisher`]: the caller's thread only
/// enqueues; a background thread creates the schema on its first batch (as `shadowdiff migrate`
/// does) and inserts batches, retrying a failed insert twice (0.2 s, then 1 s) before dropping
/// the batch with a warning and counting it in [`publish_failures`]. Dropping the publisher
/// flushes what is queued.
#[cfg(feature = "clickhouse")]
pub struct ClickHousePublisher {
    records: RecordPublisher,
}

#[cfg(feature = "clickhouse")]
impl ClickHousePublisher {
    /// Publishes to `database` on the ClickHouse HTTP endpoint `url` (e.g.
    /// `http://127.0.0.1:8123`); up to `capacity` records wait in memory.
    pub fn new(url: &str, database: &str, capacity: usize) -> Result<Self, PublishError> {
        let config = shadowdiff_clickhouse::ClickHouseConfig::new(url).with_database(database);
        let store = shadowdiff_clickhouse::ClickHouseStore::new(&config)
            .map_err(|e| PublishError::Other(Box::new(e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PublishError::Other(Box::new(e)))?;
        let state = std::sync::Mutex::new((runtime, store, false));
        let records = RecordPublisher::new(capacity, move |batch| {
            let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
            let (runtime, store, migrated) = &mut *guard;
            let mut delays = [200u64, 1_000].into_iter();
            loop {
                let attempt = runtime.block_on(async {
                    if !*migrated {
                        store.migrate().await?;
                    }
                    store.insert_batch(&batch).await
                });
                match attempt {
                    Ok(()) => {
                        *migrated = true;
                        return;
                    }
                    Err(error) => match delays.next() {
                        Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
                        None => {
                            PUBLISH_FAILURES.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%error, records = batch.len(), "ClickHouse did not take a batch of experiment records; dropped.");
                            return;
                        }
                    },
                }
            }
        });
        Ok(Self { records })
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.records.dropped()
    }
}

#[cfg(feature = "clickhouse")]
impl Publisher for ClickHousePublisher {
    fn publish(&self, run: &RunResult) -> Result<(), PublishError> {
        self.records.publish(run)
    }
}
