//! The pipeline's own metrics: one definition each.

pub const QUEUE_DEPTH: &str = "shadowdiff_queue_depth";
pub const COMPARED: &str = "shadowdiff_diff_compared_total";
pub const MISMATCHED: &str = "shadowdiff_diff_mismatched_total";
pub const TARGET_ERRORS: &str = "shadowdiff_diff_target_errors_total";
pub const SKIPPED: &str = "shadowdiff_diff_skipped_total";
pub const DIFF_SECONDS: &str = "shadowdiff_diff_duration_seconds";
pub const STORE_ROWS: &str = "shadowdiff_store_rows_total";
pub const STORE_FAILURES: &str = "shadowdiff_store_failures_total";

/// Describes every metric once, to the recorder installed at that moment. The embedded pipeline
/// calls this before the admin endpoint installs the Prometheus recorder, so the first event
/// describes again (once) to make sure `/metrics` carries the HELP lines.
pub(crate) fn describe() {
    metrics::describe_gauge!(QUEUE_DEPTH, "Items waiting in a pipeline queue, by queue.");
    metrics::describe_counter!(COMPARED, "Exchange × candidate pairs compared.");
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

pub(crate) fn diffed(records: &[shadowdiff_model::DiffRecord], seconds: f64) {
    use shadowdiff_model::{Outcome, TargetRole};
    described();
    for r in records.iter().filter(|r| r.role == TargetRole::Candidate) {
        match r.outcome {
            Outcome::Match => metrics::counter!(COMPARED).increment(1),
            Outcome::Mismatch => {
                metrics::counter!(COMPARED).increment(1);
                metrics::counter!(MISMATCHED).increment(1);
            }
            Outcome::Error => metrics::counter!(TARGET_ERRORS).increment(1),
            Outcome::Skipped => metrics::counter!(SKIPPED).increment(1),
            Outcome::Blocked => {}
        }
    }
    metrics::histogram!(DIFF_SECONDS).record(seconds);
}

pub(crate) fn stored(rows: usize) {
    described();
    metrics::counter!(STORE_ROWS).increment(rows as u64);
}

pub(crate) fn store_failed() {
    described();
    metrics::counter!(STORE_FAILURES).increment(1);
}
