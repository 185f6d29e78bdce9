//! The tap's metrics: one definition each.

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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::Incomplete => "incomplete",
        }
    }
}

pub const CAPTURED: &str = "shadowdiff_capture_exchanges_total";
pub const DROPPED: &str = "shadowdiff_capture_dropped_total";
pub const CONTROL_ERRORS: &str = "shadowdiff_capture_control_errors_total";
pub const CONTROL_LATENCY: &str = "shadowdiff_capture_control_latency_seconds";

pub(crate) fn describe() {
    metrics::describe_counter!(CAPTURED, "Exchanges captured and handed to the queue.");
    metrics::describe_counter!(DROPPED, "Captured exchanges dropped, by reason.");
    metrics::describe_counter!(
        CONTROL_ERRORS,
        "Client requests the control failed or timed out on."
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

    pub(crate) fn control_latency(&self, us: u64) {
        self.control_latency.record(us as f64 / 1e6);
    }
}
