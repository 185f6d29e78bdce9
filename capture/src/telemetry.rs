//! The tap's metrics: one definition each.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a captured exchange was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue behind the tap was full.
    QueueFull,
    /// The queue was closed (shutting down).
    Closed,
    /// The sink refused it (e.g. the Kafka producer's local queue).
    Rejected,
    /// The client or control went away before the response body ended.
    Incomplete,
}

impl DropReason {
    /// The `reason` label of the dropped metric (`queue_full`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::Incomplete => "incomplete",
        }
    }
}

/// Why the tap refused a client's request or a control's response (`refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A request head httparse or the line-end check refused (bare CR/LF, bad syntax, no Host).
    MalformedHead,
    /// A request head over the size or field-count limit.
    HeadTooLarge,
    /// Ambiguous framing fields: several Transfer-Encoding, Content-Length or Host fields, a
    /// coding other than chunked, both framings.
    Framing,
    /// A malformed chunked request body.
    Chunked,
    /// The request head did not arrive whole within the head timeout.
    HeadTimeout,
    /// The request body stalled longer than the body timeout.
    BodyTimeout,
    /// The process already serves its connection limit.
    ConnectionLimit,
    /// The control's response was malformed or ambiguous (answered 502, or cut).
    ControlResponse,
}

impl Refusal {
    const ALL: [Refusal; 8] = [
        Self::MalformedHead,
        Self::HeadTooLarge,
        Self::Framing,
        Self::Chunked,
        Self::HeadTimeout,
        Self::BodyTimeout,
        Self::ConnectionLimit,
        Self::ControlResponse,
    ];

    /// The `reason` label of `refused_total` (`malformed_head`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedHead => "malformed_head",
            Self::HeadTooLarge => "head_too_large",
            Self::Framing => "framing",
            Self::Chunked => "chunked",
            Self::HeadTimeout => "head_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::ConnectionLimit => "connection_limit",
            Self::ControlResponse => "control_response",
        }
    }
}

/// Refusals are logged at `info` at most once a second per process; the log line says how
/// many went unlogged since the last one (an attacker must not be able to flood the log).
static LAST_REFUSAL_LOG_MS: AtomicU64 = AtomicU64::new(0);
static UNLOGGED_REFUSALS: AtomicU64 = AtomicU64::new(0);

fn log_refusal(reason: Refusal, why: &str) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_REFUSAL_LOG_MS.load(Ordering::Relaxed);
    if now_ms.saturating_sub(last) >= 1000
        && LAST_REFUSAL_LOG_MS
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let unlogged = UNLOGGED_REFUSALS.swap(0, Ordering::Relaxed);
        tracing::info!(
            reason = reason.as_str(),
            why,
            unlogged_since_last = unlogged,
            "Refused a request (or a control's response)."
        );
    } else {
        UNLOGGED_REFUSALS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counter: requests (or control responses) refused, by `reason`.
pub(crate) const REFUSED: &str = "shadowdiff_capture_refused_total";
/// Counter: exchanges captured and handed to the queue.
pub(crate) const CAPTURED: &str = "shadowdiff_capture_exchanges_total";
/// Counter: captured exchanges dropped, by `reason`.
pub(crate) const DROPPED: &str = "shadowdiff_capture_dropped_total";
/// Counter: client requests the control failed or timed out on.
pub(crate) const CONTROL_ERRORS: &str = "shadowdiff_capture_control_errors_total";
/// Histogram: control response time.
pub(crate) const CONTROL_LATENCY: &str = "shadowdiff_capture_control_latency_seconds";

pub(crate) fn describe() {
    metrics::describe_counter!(CAPTURED, "Exchanges captured and handed to the queue.");
    metrics::describe_counter!(DROPPED, "Captured exchanges dropped, by reason.");
    metrics::describe_counter!(
        CONTROL_ERRORS,
        "Client requests the control failed or timed out on."
    );
    metrics::describe_counter!(
        REFUSED,
        "Client requests (and control responses) the tap refused, by reason."
    );
    metrics::describe_histogram!(CONTROL_LATENCY, "Control response time seen by the tap.");
}

pub(crate) fn captured() {
    metrics::counter!(CAPTURED).increment(1);
}

pub(crate) fn dropped(reason: DropReason) {
    metrics::counter!(DROPPED, "reason" => reason.as_str()).increment(1);
}

/// The tap's metric handles, looked up once per serving thread: a `counter!` call hashes its
/// key into the recorder's registry every time, several hundred instructions per exchange.
pub(crate) struct TapMetrics {
    captured: metrics::Counter,
    dropped: [metrics::Counter; 4],
    control_errors: metrics::Counter,
    control_latency: metrics::Histogram,
    refused: [metrics::Counter; 8],
}

impl TapMetrics {
    pub(crate) fn new() -> Self {
        let dropped = [
            DropReason::QueueFull,
            DropReason::Closed,
            DropReason::Rejected,
            DropReason::Incomplete,
        ]
        .map(|reason| metrics::counter!(DROPPED, "reason" => reason.as_str()));
        Self {
            captured: metrics::counter!(CAPTURED),
            dropped,
            control_errors: metrics::counter!(CONTROL_ERRORS),
            control_latency: metrics::histogram!(CONTROL_LATENCY),
            refused: Refusal::ALL
                .map(|reason| metrics::counter!(REFUSED, "reason" => reason.as_str())),
        }
    }

    pub(crate) fn captured(&self) {
        self.captured.increment(1);
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        let index = match reason {
            DropReason::QueueFull => 0,
            DropReason::Closed => 1,
            DropReason::Rejected => 2,
            DropReason::Incomplete => 3,
        };
        self.dropped[index].increment(1);
    }

    pub(crate) fn control_error(&self) {
        self.control_errors.increment(1);
    }

    /// Counts a refusal and logs it (rate-limited).
    pub(crate) fn refused(&self, reason: Refusal, why: &str) {
        self.refused[reason as usize].increment(1);
        log_refusal(reason, why);
    }

    pub(crate) fn control_latency(&self, us: u64) {
        self.control_latency.record(us as f64 / 1e6);
    }
}
