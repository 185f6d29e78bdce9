//! The replayer's metrics: one definition each.

use shadowdiff_model::TargetErrorKind;

/// Counter: exchanges replayed to their targets.
pub(crate) const REPLAYED: &str = "shadowdiff_replay_exchanges_total";
/// Counter: exchanges the side-effect guard did not replay, by `reason`.
pub(crate) const BLOCKED: &str = "shadowdiff_replay_blocked_total";
/// Counter: target requests that failed, by `target` and `kind`.
pub(crate) const TARGET_ERRORS: &str = "shadowdiff_replay_target_errors_total";
/// Histogram: target response time, by `target`.
pub(crate) const TARGET_LATENCY: &str = "shadowdiff_replay_target_latency_seconds";

pub(crate) fn describe() {
    metrics::describe_counter!(REPLAYED, "Exchanges replayed to their targets.");
    metrics::describe_counter!(
        BLOCKED,
        "Exchanges the side-effect guard did not replay, by reason."
    );
    metrics::describe_counter!(
        TARGET_ERRORS,
        "Target requests that failed, by target and kind (timeout, connect, …)."
    );
    metrics::describe_histogram!(TARGET_LATENCY, "Target response time, by target.");
}

pub(crate) fn replayed() {
    metrics::counter!(REPLAYED).increment(1);
}

pub(crate) fn blocked(reason: &'static str) {
    metrics::counter!(BLOCKED, "reason" => reason).increment(1);
}

pub(crate) fn target_error(target: &str, kind: TargetErrorKind) {
    metrics::counter!(TARGET_ERRORS, "target" => target.to_string(), "kind" => kind.as_str())
        .increment(1);
}

/// The response-time histogram of `target` (the caller keeps it).
pub(crate) fn target_latency(target: &str) -> metrics::Histogram {
    metrics::histogram!(TARGET_LATENCY, "target" => target.to_string())
}
