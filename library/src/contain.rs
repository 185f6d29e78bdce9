//! Keeping candidates out of the caller's way: their panics do not print, and a mismatch can be
//! made to fail tests.

use crate::result::RunResult;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs (or polls) a candidate.
    static IN_CANDIDATE: Cell<bool> = const { Cell::new(false) };
    /// `Some` while a [`RaiseOnMismatches`] guard lives on this thread.
    static RAISE_HERE: Cell<Option<bool>> = const { Cell::new(None) };
}

static HOOK: Once = Once::new();
static SILENCED: AtomicU64 = AtomicU64::new(0);
static RAISE: AtomicBool = AtomicBool::new(false);
static RAISE_FROM_ENV: Once = Once::new();

/// The environment variable that turns [`set_raise_on_mismatches`] on for the whole process
/// (`1` or `true`), e.g. in CI.
pub const RAISE_ENV: &str = "SHADOWDIFF_RAISE_ON_MISMATCHES";

/// Installs, once, a panic hook in front of the current one that stays silent for panics raised
/// inside a candidate (they are caught, counted and published as `panic`): without it every
/// candidate panic printed through the global hook on the caller's path, with a backtrace when
/// those are on (6,900 stderr lines in one run; one panic stretched the control's time from
/// 6 ms to 121 ms). Every other panic goes to the hook that was there before. A hook set after
/// the first experiment replaces this one, and candidate panics print again.
pub(crate) fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CANDIDATE.with(Cell::get) {
                SILENCED.fetch_add(1, Ordering::Relaxed);
                return;
            }
            previous(info);
        }));
    });
}

/// Candidate panics kept off stderr since the process started (each is also published with its
/// run as a `panic` outcome).
pub fn silenced_candidate_panics() -> u64 {
    SILENCED.load(Ordering::Relaxed)
}

/// Runs `f` as a candidate on this thread: a panic in it does not print.
pub(crate) fn as_candidate<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CANDIDATE.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(IN_CANDIDATE.with(|c| c.replace(true)));
    f()
}

/// A (boxed) future polled as a candidate: panics inside its polls do not print.
pub(crate) struct CandidateFuture<F>(pub(crate) F);

impl<F: std::future::Future + Unpin> std::future::Future for CandidateFuture<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let inner = std::pin::Pin::new(&mut self.get_mut().0);
        as_candidate(|| inner.poll(cx))
    }
}

/// Makes every experiment's failing run (a mismatch, candidate error, panic or timeout) panic
/// on the caller's path after it is published, with the experiment, its context and the
/// differences in the message: Scientist's `raise_on_mismatches`, for test suites. Applies to
/// `run`, `run_eq` and the async `run().await`; detached runs finish after their caller
/// returned, so they only publish. Also on when [`RAISE_ENV`] is `1` or `true`. A
/// [`RaiseOnMismatches`] guard overrides it on its thread.
pub fn set_raise_on_mismatches(on: bool) {
    RAISE.store(on, Ordering::Relaxed);
}

/// While it lives, failing runs on this thread panic (or, with `RaiseOnMismatches::off()`, do
/// not), whatever the process-wide setting: for one test among others running in parallel.
/// Async tests on a current-thread runtime (`#[tokio::test]`'s default) stay on one thread.
#[must_use = "the setting lasts as long as the guard"]
pub struct RaiseOnMismatches {
    previous: Option<bool>,
}

impl RaiseOnMismatches {
    /// Failing runs on this thread panic until the guard is dropped.
    pub fn on() -> Self {
        Self::set(true)
    }

    /// Failing runs on this thread do not panic until the guard is dropped.
    pub fn off() -> Self {
        Self::set(false)
    }

    fn set(on: bool) -> Self {
        Self {
            previous: RAISE_HERE.with(|r| r.replace(Some(on))),
        }
    }
}

impl Drop for RaiseOnMismatches {
    fn drop(&mut self) {
        RAISE_HERE.with(|r| r.set(self.previous));
    }
}

fn raising() -> bool {
    if let Some(here) = RAISE_HERE.with(Cell::get) {
        return here;
    }
    RAISE_FROM_ENV.call_once(|| {
        if std::env::var(RAISE_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
            RAISE.store(true, Ordering::Relaxed);
        }
    });
    RAISE.load(Ordering::Relaxed)
}

/// Panics with a readable message when raising is on (for this experiment: `this`, else the
/// thread's guard, else the process setting) and `run` failed.
#[inline]
pub(crate) fn raise_if_failed(run: &RunResult, this: Option<bool>) {
    if run.has_failures() && this.unwrap_or_else(raising) {
        raise(run);
    }
}

#[cold]
#[inline(never)]
fn raise(run: &RunResult) -> ! {
    panic!("{}", failure_message(run));
}

/// What a raised mismatch says: the experiment, its context, each failing candidate with its
/// differences.
pub(crate) fn failure_message(run: &RunResult) -> String {
    use std::fmt::Write;
    let mut out = format!("experiment `{}` mismatched", run.experiment);
    if !run.context.is_empty() {
        let context: Vec<String> = run
            .context
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(out, " (context: {})", context.join(", "));
    }
    out.push(':');
    for c in run.candidates.iter().filter(|c| c.outcome.is_failure()) {
        let _ = write!(out, "\n  candidate `{}`: {}", c.name, c.outcome.as_str());
        if let Some(d) = &c.detail {
            let _ = write!(out, " ({d})");
        }
        for d in &c.differences {
            let _ = write!(
                out,
                "\n    {} [{}]: control {} / candidate {}",
                d.path,
                d.kind.as_str(),
                d.control.as_deref().unwrap_or("<missing>"),
                d.candidate.as_deref().unwrap_or("<missing>")
            );
        }
    }
    out
}
