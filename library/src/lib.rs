//! In-process experiments for Rust, in the spirit of GitHub's Scientist.
//!
//! Run a control code path and one or more candidates, always return the control's result
//! (its errors and panics propagate unchanged), compare the results with shadowdiff's diff
//! engine (same paths, kinds and rules as HTTP bodies, rooted at `result`) and publish what was
//! observed. Candidate panics, errors and timeouts never reach the caller.
//!
//! ```
//! use shadowdiff::{CandidateOutcome, Experiment, MemoryPublisher};
//!
//! let mem = MemoryPublisher::new();
//! let x = 20;
//! let got = Experiment::new("doc-basic")
//!     .control(|| vec![x, x + 1])
//!     .candidate("v2", || vec![x, x + 2])
//!     .publisher(mem.clone())
//!     .run();
//! assert_eq!(got, vec![20, 21]);
//! let run = &mem.runs()[0];
//! assert_eq!(run.candidates[0].outcome, CandidateOutcome::Mismatched);
//! assert_eq!(run.candidates[0].differences[0].path, "result[1]");
//! ```
//!
//! - Sync: [`Experiment::control`] / [`Experiment::try_control`] (for `Result`, with
//!   `compare_errors`), then `run` (serde + diff engine), `run_eq` (`PartialEq`),
//!   `run_strict` (mismatch is an `Err`, for tests) or `run_observed`.
//! - Async: [`Experiment::control_async`]; candidates run concurrently with the control, each
//!   under a timeout (cancelled when it expires); `run_detached` returns as soon as the control
//!   is done and sheds runs beyond an in-flight bound.
//! - Runtime switches: [`settings`](fn@settings)`("name").set_enabled(false)`, `.set_percent(5.0)`, and the
//!   `SHADOWDIFF_EXPERIMENTS_DISABLED=a,b` environment variable.
//! - Publishers: [`TracingPublisher`] (default), [`MemoryPublisher`], [`MetricsPublisher`],
//!   [`RecordPublisher`] (→ `DiffRecord`s for the store).
//! - `#[shadowdiff::experiment(candidate = new_impl, percent = 1.0)]` on a sync or async fn,
//!   with per-call `publisher = f`, `compare = f`, `compare_errors = f`, `context(k = expr)`,
//!   `strict`, `eq`, `timeout_ms`, `name`.
//! - Tests: [`RaiseOnMismatches`] / [`set_raise_on_mismatches`] (or `SHADOWDIFF_RAISE_ON_MISMATCHES=1`)
//!   make every failing run panic with its differences and context.
//! - Candidate panics never print: a panic hook chained in front of yours keeps them off stderr
//!   (they are published as `panic`; [`silenced_candidate_panics`] counts them). Blocking work in
//!   an async experiment goes to [`AsyncExperiment::candidate_blocking`], so its timeout holds; a
//!   candidate that blocked past its timeout is reported `timeout`, never `matched`.
//!
//! ```
//! fn sum_v2(xs: Vec<u32>) -> u32 {
//!     xs.iter().copied().fold(0, u32::wrapping_add)
//! }
//!
//! #[shadowdiff::experiment(candidate = sum_v2, percent = 100)]
//! fn sum(xs: Vec<u32>) -> u32 {
//!     xs.iter().sum()
//! }
//!
//! assert_eq!(sum(vec![1, 2, 3]), 6);
//! ```
//!
//! The sampling decision comes first: a disabled or sampled-out call builds no candidate and
//! clones no argument. On hot paths use [`Experiment::with_settings`] with [`settings!`] so the
//! disabled check is one atomic load.
mod async_run;
mod compare;
mod contain;
mod experiment;
mod publish;
mod result;
mod settings;
mod tick;

pub use async_run::{AsyncExperiment, RunFuture, DEFAULT_TIMEOUT};
pub use compare::{ArmKind, Diffable, Fallible, Plain, ROOT};
pub use contain::{
    set_raise_on_mismatches, silenced_candidate_panics, RaiseOnMismatches, RAISE_ENV,
};
pub use experiment::{Experiment, SyncExperiment};
#[cfg(feature = "clickhouse")]
pub use publish::ClickHousePublisher;
pub use publish::{
    publish_failures, set_default_publisher, FanoutPublisher, MemoryPublisher, MetricsPublisher,
    NoopPublisher, PublishError, Publisher, RecordPublisher, TracingPublisher,
};
pub use result::{
    CandidateObservation, CandidateOutcome, ControlObservation, ControlOutcome, MismatchError,
    RunResult,
};
/// What [`.clean()`](SyncExperiment::clean) returns.
pub use serde_json::{self, Value};
pub use settings::{
    experiments, settings, ExperimentSettings, DEFAULT_MAX_IN_FLIGHT, DISABLED_ENV,
};
/// The rules [`.rules()`](SyncExperiment::rules) takes (ignored paths, tolerances, array
/// modes), re-exported so that no other shadowdiff crate is needed.
pub use shadowdiff_differ::{ArrayMode, Rules, RulesConfig, RulesError, Tolerance};
pub use shadowdiff_macros::experiment;
pub use shadowdiff_model::{DiffKind, Difference};

#[doc(hidden)]
pub mod __private {
    pub use crate::settings::ExperimentSettings;

    /// Pins an async block's output type so that `?` and `return` in a macro-wrapped body infer.
    pub fn typed_future<R, F: ::std::future::Future<Output = R>>(f: F) -> F {
        f
    }
}
