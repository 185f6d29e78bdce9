//! The pipeline's own metrics: one definition each, and the counters of one pipeline.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one pipeline, readable by tests and the run summary.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Exchanges the tap's sink accepted.
    pub captured: AtomicU64,
    /// Exchanges dropped because the queue (or its byte budget) was full.
    pub dropped_queue_full: AtomicU64,
    /// Exchanges dropped for another reason (queue closed, record rejected).
    pub dropped_other: AtomicU64,
    /// Exchanges replayed to their targets.
    pub replayed: AtomicU64,
    /// Exchanges the side-effect guard did not replay.
    pub blocked: AtomicU64,
    /// Exchanges that waited because every replay slot was busy (the targets answer slower than
    /// requests arrive).
    pub saturated: AtomicU64,
    /// Replays in flight while the replaying runtime woke up late (short of CPU): their
    /// latencies are not used.
    pub host_busy: AtomicU64,
    /// Candidate pairs compared.
    pub compared: AtomicU64,
    /// Compared candidate pairs with a difference that is not noise.
    pub mismatched: AtomicU64,
    /// Candidate pairs where the candidate gave no answer.
    pub target_errors: AtomicU64,
    /// Candidate pairs not compared (truncated body, no control response).
    pub skipped: AtomicU64,
    /// Diff records written to the store.
    pub records_written: AtomicU64,
    /// Store writes that failed (and were retried).
    pub store_failures: AtomicU64,
}

impl PipelineStats {
    /// Reads one of the counters.
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

/// Gauge: items waiting in a pipeline queue, by `queue`.
pub const QUEUE_DEPTH: &str = "shadowdiff_queue_depth";
/// Counter: exchange × candidate pairs compared.
pub const COMPARED: &str = "shadowdiff_diff_compared_total";
/// Counter: compared pairs with a difference that is not noise.
pub const MISMATCHED: &str = "shadowdiff_diff_mismatched_total";
/// Counter: exchange × candidate pairs where the candidate gave no answer.
pub const TARGET_ERRORS: &str = "shadowdiff_diff_target_errors_total";
/// Counter: exchange × candidate pairs not compared.
pub(crate) const SKIPPED: &str = "shadowdiff_diff_skipped_total";
/// Counter: control answers compared with the control's earlier answer to an identical request
/// (`repeat` records), by `outcome` (`match`: the control answered the same; `mismatch`: it
/// changed something, its own noise).
pub(crate) const REPEATS: &str = "shadowdiff_diff_repeats_total";
/// Histogram: time to diff one replay result.
pub(crate) const DIFF_SECONDS: &str = "shadowdiff_diff_duration_seconds";
/// Counter: exchanges that waited because every replay slot was busy.
pub(crate) const REPLAY_SATURATED: &str = "shadowdiff_replay_saturated_total";
/// Counter: replays timed while the replaying process was short of CPU (latencies not used).
pub(crate) const REPLAY_HOST_BUSY: &str = "shadowdiff_replay_host_busy_total";
/// Counter: diff records written to the store.
pub const STORE_ROWS: &str = "shadowdiff_store_rows_total";
/// Counter: store writes that failed (and were retried).
pub const STORE_FAILURES: &str = "shadowdiff_store_failures_total";

/// Describes every metric once, to the recorder installed at that moment. The embedded pipeline
/// calls this before the admin endpoint installs the Prometheus recorder, so the first event
/// describes again (once) to make sure `/metrics` carries the HELP lines.
pub(crate) fn describe() {
    metrics::describe_gauge!(QUEUE_DEPTH, "Items waiting in a pipeline queue, by queue.");
    metrics::describe_counter!(COMPARED, "Exchange × candidate pairs compared.");
    metrics::describe_counter!(
        REPLAY_SATURATED,
        "Exchanges that waited because every replay slot was busy (targets slower than traffic)."
    );
    metrics::describe_counter!(
        REPLAY_HOST_BUSY,
        "Replays in flight while the replaying process was short of CPU; their latencies are not used."
    );
    metrics::describe_counter!(
        MISMATCHED,
        "Compared pairs with a difference that is not noise."
    );
    metrics::describe_counter!(
        TARGET_ERRORS,
        "Exchange × candidate pairs where the candidate gave no answer."
    );
    metrics::describe_counter!(
        SKIPPED,
        "Exchange × candidate pairs not compared (truncated body, no control response)."
    );
    metrics::describe_histogram!(DIFF_SECONDS, "Time to diff one replay result.");
    metrics::describe_counter!(
        REPEATS,
        "Control answers compared with its earlier answer to an identical request, by outcome."
    );
    metrics::describe_counter!(STORE_ROWS, "Diff records written to the store.");
    metrics::describe_counter!(
        STORE_FAILURES,
        "Store writes that failed (and were retried)."
    );
}

fn described() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(describe);
}

/// The depth gauge of one queue. Take it once per stage: building the labelled key is the
/// expensive part, setting the value is cheap.
pub(crate) fn queue_depth(queue: &'static str) -> metrics::Gauge {
    described();
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue)
}

/// What the candidate records of one replay result count as. The one mapping from outcome to
/// counter: Prometheus and the pipeline's own counters ([`PipelineStats`]) both take it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) compared: u64,
    pub(crate) mismatched: u64,
    pub(crate) target_errors: u64,
    pub(crate) skipped: u64,
}

impl Tally {
    pub(crate) fn of(records: &[shadowdiff_model::DiffRecord]) -> Self {
        use shadowdiff_model::{Outcome, TargetRole};
        let mut t = Self::default();
        for r in records.iter().filter(|r| r.role == TargetRole::Candidate) {
            match r.outcome {
                Outcome::Match => t.compared += 1,
                Outcome::Mismatch => {
                    t.compared += 1;
                    t.mismatched += 1;
                }
                Outcome::Error => t.target_errors += 1,
                Outcome::Skipped => t.skipped += 1,
                Outcome::Blocked => {}
            }
        }
        t
    }
}

/// A differ thread's metric handles, looked up once when the thread starts (like the tap's
/// and the queue gauges): a `counter!` call hashes its key into the recorder's registry every
/// time, four lookups per diffed exchange.
pub(crate) struct DiffMetrics {
    compared: metrics::Counter,
    mismatched: metrics::Counter,
    target_errors: metrics::Counter,
    skipped: metrics::Counter,
    /// By [`REPEAT_OUTCOMES`].
    repeats: [metrics::Counter; 5],
    seconds: metrics::Histogram,
}

/// The outcomes a repeat record is counted by, in [`DiffMetrics::repeats`]' order.
const REPEAT_OUTCOMES: [shadowdiff_model::Outcome; 5] = {
    use shadowdiff_model::Outcome::*;
    [Match, Mismatch, Error, Blocked, Skipped]
};

impl DiffMetrics {
    pub(crate) fn new() -> Self {
        described();
        Self {
            compared: metrics::counter!(COMPARED),
            mismatched: metrics::counter!(MISMATCHED),
            target_errors: metrics::counter!(TARGET_ERRORS),
            skipped: metrics::counter!(SKIPPED),
            repeats: REPEAT_OUTCOMES
                .map(|outcome| metrics::counter!(REPEATS, "outcome" => outcome.as_str())),
            seconds: metrics::histogram!(DIFF_SECONDS),
        }
    }

    /// Counts one diffed replay result in Prometheus and in `stats`.
    pub(crate) fn diffed(
        &self,
        records: &[shadowdiff_model::DiffRecord],
        seconds: f64,
        stats: &PipelineStats,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let t = Tally::of(records);
        for (handle, n, counter) in [
            (&self.compared, t.compared, &stats.compared),
            (&self.mismatched, t.mismatched, &stats.mismatched),
            (&self.target_errors, t.target_errors, &stats.target_errors),
            (&self.skipped, t.skipped, &stats.skipped),
        ] {
            if n > 0 {
                handle.increment(n);
                counter.fetch_add(n, Relaxed);
            }
        }
        for r in records
            .iter()
            .filter(|r| r.role == shadowdiff_model::TargetRole::Repeat)
        {
            if let Some(i) = REPEAT_OUTCOMES.iter().position(|o| *o == r.outcome) {
                self.repeats[i].increment(1);
            }
        }
        self.seconds.record(seconds);
    }
}

/// Counts rows written to the store, in Prometheus and in `stats`.
pub(crate) fn stored(rows: usize, stats: &PipelineStats) {
    described();
    metrics::counter!(STORE_ROWS).increment(rows as u64);
    stats
        .records_written
        .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Counts a failed store write, in Prometheus and in `stats`.
pub(crate) fn store_failed(stats: &PipelineStats) {
    described();
    metrics::counter!(STORE_FAILURES).increment(1);
    stats
        .store_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowdiff_model::{DiffRecord, Outcome, TargetRole, SCHEMA_VERSION};

    fn record(role: TargetRole, outcome: Outcome) -> DiffRecord {
        DiffRecord {
            schema_version: SCHEMA_VERSION,
            exchange_id: "x".into(),
            captured_at_ms: 0,
            experiment: "e".into(),
            method: "GET".into(),
            route: "/".into(),
            target: "t".into(),
            role,
            outcome,
            control_status: None,
            target_status: None,
            control_latency_us: None,
            target_latency_us: None,
            differences: Vec::new(),
            noise: Vec::new(),
            fingerprint: 0,
            detail: None,
            notes: Vec::new(),
            side_effects: Vec::new(),
        }
    }

    #[test]
    fn one_mapping_counts_candidates_only_and_feeds_the_pipeline_counters() {
        use TargetRole::{Candidate, Secondary};
        let records = vec![
            record(Candidate, Outcome::Match),
            record(Candidate, Outcome::Mismatch),
            record(Candidate, Outcome::Error),
            record(Candidate, Outcome::Skipped),
            record(Candidate, Outcome::Blocked),
            record(Secondary, Outcome::Mismatch),
        ];
        assert_eq!(
            Tally::of(&records),
            Tally {
                compared: 2,
                mismatched: 1,
                target_errors: 1,
                skipped: 1
            }
        );
        let stats = PipelineStats::default();
        DiffMetrics::new().diffed(&records, 0.001, &stats);
        stored(6, &stats);
        store_failed(&stats);
        let g = PipelineStats::get;
        assert_eq!(
            (
                g(&stats.compared),
                g(&stats.mismatched),
                g(&stats.target_errors),
                g(&stats.skipped),
                g(&stats.records_written),
                g(&stats.store_failures)
            ),
            (2, 1, 1, 1, 6, 1)
        );
    }
}
