//! The sandbox's metrics: one definition each.

/// Counter: outbound calls through the sandbox, by `verdict`.
pub(crate) const REQUESTS: &str = "shadowdiff_sandbox_requests_total";
/// Counter: blocked side effects not recorded because the log was full.
pub(crate) const LOG_REFUSED: &str = "shadowdiff_sandbox_log_refused_total";

pub(crate) fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Outbound calls through the sandbox, by verdict (passed, canned, blocked, tunnel, refused)."
    );
    metrics::describe_counter!(
        LOG_REFUSED,
        "Blocked side effects not recorded because the log was full."
    );
}

pub(crate) fn request(verdict: &'static str) {
    metrics::counter!(REQUESTS, "verdict" => verdict).increment(1);
}

pub(crate) fn log_refused() {
    metrics::counter!(LOG_REFUSED).increment(1);
}
