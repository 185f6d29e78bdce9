//! What one run of an experiment observed; this is what publishers receive.

use serde::Serialize;
use shadowdiff_model::Difference;
use std::fmt;
use std::time::Duration;

/// What the control did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlOutcome {
    /// Returned a value (`Ok` for fallible experiments).
    Value,
    /// Returned `Err`; it was handed back to the caller unchanged.
    Error,
    /// Panicked; the panic was resumed after publishing.
    Panic,
}

/// The verdict on one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateOutcome {
    /// Same result as the control (both errors count when `compare_errors` agrees).
    Matched,
    /// Different result.
    Mismatched,
    /// Different result, accepted by an `ignore` rule.
    Ignored,
    /// Returned `Err` where the control did not.
    Error,
    /// Panicked (caught; never reaches the caller).
    Panic,
    /// Did not finish within the timeout and was cancelled.
    Timeout,
}

impl CandidateOutcome {
    /// The snake_case name, as serialized and shown in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Mismatched => "mismatched",
            Self::Ignored => "ignored",
            Self::Error => "error",
            Self::Panic => "panic",
            Self::Timeout => "timeout",
        }
    }

    /// True when the candidate disagrees with the control in a way nobody accepted.
    #[inline]
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Matched | Self::Ignored)
    }
}

/// Timing and outcome of the control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlObservation {
    /// Whether the control returned a value, an error or panicked.
    pub outcome: ControlOutcome,
    /// Error or panic message.
    pub detail: Option<String>,
    /// Wall-clock time the control took.
    pub wall: Duration,
    /// Thread CPU time; `None` for async arms, which may hop threads.
    pub cpu: Option<Duration>,
    /// The value as published, when the experiment has a `clean` function.
    pub value: Option<serde_json::Value>,
}

/// Timing and verdict of one candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateObservation {
    /// The name given to [`candidate`](crate::SyncExperiment::candidate).
    pub name: &'static str,
    /// The verdict against the control.
    pub outcome: CandidateOutcome,
    /// Path-level differences (rooted at `result`) when the results differ.
    pub differences: Vec<Difference>,
    /// Error or panic message, or the timeout.
    pub detail: Option<String>,
    /// Wall-clock time the candidate took (up to its timeout).
    pub wall: Duration,
    /// Thread CPU time, when `cpu_time` is on; `None` for async arms.
    pub cpu: Option<Duration>,
    /// The value as published, when the experiment has a `clean` function and the candidate
    /// returned.
    pub value: Option<serde_json::Value>,
}

/// Everything one sampled-in run observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// The experiment's name.
    pub experiment: &'static str,
    /// Unix milliseconds when the run started.
    pub started_at_ms: u64,
    /// The key/value pairs given with `context`, in order.
    pub context: Vec<(&'static str, String)>,
    /// What the control did.
    pub control: ControlObservation,
    /// One per candidate (sync candidates run, and are listed, in random order).
    pub candidates: Vec<CandidateObservation>,
}

impl RunResult {
    /// True when any candidate failed (mismatch, error, panic or timeout).
    #[inline]
    pub fn has_failures(&self) -> bool {
        self.candidates.iter().any(|c| c.outcome.is_failure())
    }

    /// The observation of the candidate called `name`.
    pub fn candidate(&self, name: &str) -> Option<&CandidateObservation> {
        self.candidates.iter().find(|c| c.name == name)
    }
}

/// Returned by `run_strict` when a candidate disagreed with the control.
#[derive(Debug)]
pub struct MismatchError<T> {
    /// The control's result, which a non-strict run would have returned.
    pub control: T,
    /// What the run observed, with the failing candidates.
    pub run: Box<RunResult>,
}

impl<T> fmt::Display for MismatchError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "experiment `{}` mismatched:", self.run.experiment)?;
        for c in self
            .run
            .candidates
            .iter()
            .filter(|c| c.outcome.is_failure())
        {
            write!(f, "\n  candidate `{}`: {}", c.name, c.outcome.as_str())?;
            if let Some(d) = &c.detail {
                write!(f, " ({d})")?;
            }
            for d in &c.differences {
                write!(
                    f,
                    "\n    {} [{}]: control {} / candidate {}",
                    d.path,
                    d.kind.as_str(),
                    d.control.as_deref().unwrap_or("<missing>"),
                    d.candidate.as_deref().unwrap_or("<missing>")
                )?;
            }
        }
        Ok(())
    }
}

impl<T: fmt::Debug> std::error::Error for MismatchError<T> {}
