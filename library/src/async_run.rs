//! Async experiments: candidates run concurrently with the control, each under a timeout.

use crate::compare::{
    eq_diff, eq_diff_ok, panic_message, serde_diff, serde_diff_ok, ArmKind, DiffFn, Fallible,
    Plain, Ran,
};
use crate::experiment::{observe_control, shared_methods, Experiment, Extras, Gate};
use crate::publish::{default_publisher, shed_guarded, Publisher};
use crate::result::{MismatchError, RunResult};
use crate::tick::Tick;
use futures_util::future::{join_all, maybe_done, BoxFuture, JoinAll, MaybeDone};
use futures_util::FutureExt;
use shadowdiff_differ::Rules;
use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default time a candidate may take before it is cancelled.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A candidate: its closure and, once first polled, the future the closure built, in one
/// allocation (a box for the closure and another for its future were two allocations and two
/// frees on every sampled-in run).
type AsyncArm<'a, R> = BoxFuture<'a, R>;

/// An async experiment with its control; add candidates, then [`run`](Self::run) (candidates
/// joined with the control) or [`run_detached`](Self::run_detached) (candidates in background
/// tasks). Needs a tokio runtime for timeouts and detached tasks.
///
/// CPU time is not measured for async arms: a task may move between threads.
#[must_use = "an experiment does nothing until it is run and awaited"]
pub struct AsyncExperiment<'a, R, F, K> {
    gate: Gate,
    control: F,
    timeout: Duration,
    extras: Option<Box<Extras<'a, R, AsyncArm<'a, R>>>>,
    kind: PhantomData<K>,
}

/// What the control produced: its result or panic payload, and its wall time.
type ControlRun<R> = (std::thread::Result<R>, Duration);

impl<'a, R: Send + 'a, F: Future<Output = R>, K: ArmKind<R>> AsyncExperiment<'a, R, F, K> {
    #[inline]
    pub(crate) fn start(exp: Experiment, control: F) -> Self {
        let (gate, on) = exp.into_parts();
        Self {
            gate,
            control,
            timeout: DEFAULT_TIMEOUT,
            extras: if on {
                Some(Box::new(Extras::new()))
            } else {
                None
            },
            kind: PhantomData,
        }
    }

    /// A candidate: a closure building its future, called only when the run is sampled in.
    #[inline]
    pub fn candidate<Fut>(
        mut self,
        name: &'static str,
        candidate: impl FnOnce() -> Fut + Send + 'a,
    ) -> Self
    where
        Fut: Future<Output = R> + Send + 'a,
    {
        if let Some(x) = &mut self.extras {
            // The closure runs at the first poll, inside the candidate's containment (panics
            // caught and kept off stderr) and its deadline.
            x.candidates
                .push((name, async move { candidate().await }.boxed()));
        }
        self
    }

    /// A candidate doing blocking (synchronous) work: it runs on tokio's blocking pool
    /// (`spawn_blocking`), so the timeout holds and the caller is not held while it works. At
    /// the timeout it counts as a timeout; the blocking call itself cannot be stopped and
    /// finishes in the background. Needs a tokio runtime (without one it counts as a panic).
    /// A blocking candidate given to [`candidate`](Self::candidate) instead blocks the task that
    /// awaits the run, control included; it is reported as a timeout when it took longer than
    /// the timeout, but it cannot be cut short.
    pub fn candidate_blocking(
        self,
        name: &'static str,
        candidate: impl FnOnce() -> R + Send + 'static,
    ) -> Self
    where
        R: Send + 'static,
    {
        self.candidate(name, move || async move {
            let joined =
                tokio::task::spawn_blocking(move || crate::contain::as_candidate(candidate)).await;
            match joined {
                Ok(v) => v,
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    Err(e) => panic!("blocking candidate `{name}` did not finish: {e}"),
                },
            }
        })
    }

    /// How long each candidate may run; then its future is dropped and it counts as a timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[inline]
    fn extras_mut(&mut self) -> Option<&mut Extras<'a, R, AsyncArm<'a, R>>> {
        self.extras.as_deref_mut()
    }

    #[inline]
    fn sampled_in(&self) -> bool {
        self.extras.is_some()
    }

    shared_methods!();

    /// Runs the experiment and hands the control's value and the run (when sampled in) to
    /// `finish`, whose output is the future's: a caller that wants only the value does not have
    /// the run (168 bytes) moved out of the future to drop it.
    async fn run_inner<T>(
        self,
        diff: DiffFn<R>,
        finish: impl FnOnce(R, Option<RunResult>) -> T,
    ) -> T {
        match self.sampled(diff, FinishWith(finish)) {
            Ok(run) => run.await,
            Err((control, finish)) => finish.finish(control.await, None),
        }
    }

    /// The sampled-in run's future, or the control and `finish` back when not sampled in.
    /// Boxed here, as it is built: built first and boxed after, it was copied into its box
    /// (and how fast that copy ran depended on where the stack happened to lie: ±10% on the
    /// same binary started from two paths).
    #[allow(clippy::type_complexity)]
    fn sampled<Fin: Finish<R>>(
        self,
        diff: DiffFn<R>,
        finish: Fin,
    ) -> Result<Pin<Box<SampledRun<'a, R, F, K, Fin>>>, (F, Fin)> {
        let Some(mut x) = self.extras else {
            return Err((self.control, finish));
        };
        let arms = CandidateRuns::NotStarted(std::mem::take(&mut x.candidates), self.timeout);
        Ok(Box::pin(SampledRun {
            control: AssertUnwindSafe(self.control).catch_unwind(),
            control_done: None,
            arms,
            x,
            settings: self.gate.settings,
            name: self.gate.name,
            diff,
            started: None,
            finish: Some(finish),
            kind: PhantomData,
        }))
    }

    /// The value only. A not-sampled run awaits just its control; the sampled run's future
    /// (joins, timeouts, judging) is boxed, so it does not size every call's future: inline, it
    /// made a disabled `run().await` cost ~48 ns over awaiting the control (peers bench).
    fn run_value(self, diff: DiffFn<R>) -> RunFuture<'a, R, F, K> {
        let raise = RaiseAfter(self.extras.as_ref().and_then(|x| x.raise));
        RunFuture {
            state: match self.sampled(diff, raise) {
                Ok(run) => RunState::Sampled { run },
                Err((control, _)) => RunState::Control { control },
            },
        }
    }

    async fn strict(self, diff: DiffFn<R>) -> Result<R, MismatchError<R>> {
        self.run_inner(diff, |v, run| match run {
            Some(run) if run.has_failures() => Err(MismatchError {
                control: v,
                run: Box::new(run),
            }),
            _ => Ok(v),
        })
        .await
    }
}

/// Runs one candidate under `timeout`, catching its panic. Timing out drops (cancels) its future.
/// The arm's first poll calls the candidate's closure: a panic in building its future is caught
/// too (and, like every candidate panic, does not print).
fn run_candidate<'a, R>(
    name: &'static str,
    arm: AsyncArm<'a, R>,
    timeout: Duration,
    start: Tick,
) -> CandidateRun<'a, R> {
    CandidateRun {
        name,
        fut: AssertUnwindSafe(crate::contain::CandidateFuture(arm)).catch_unwind(),
        start,
        timeout,
        timer: Timer::NotYet,
    }
}

/// One candidate's run: its future until the deadline, then its name, what it did and its wall
/// time. Written by hand, not as an `async fn`, to keep every sampled-in run's future small
/// (an `async fn` keeps its arguments and its locals apart, and the whole run's future is
/// moved into its box: memmove was the largest single cost of an async run).
///
/// The timer is made only when the candidate is not ready at its first poll, and lives on the
/// heap: most candidates finish at once, and tokio's timer entry made every run's future several
/// hundred bytes larger. Without a tokio runtime there is no timer and the candidate runs to its
/// end.
struct CandidateRun<'a, R> {
    name: &'static str,
    fut: futures_util::future::CatchUnwind<
        AssertUnwindSafe<crate::contain::CandidateFuture<AsyncArm<'a, R>>>,
    >,
    /// The run's start (TSC) and the time allowed from it.
    start: Tick,
    timeout: Duration,
    timer: Timer,
}

enum Timer {
    /// The candidate has not been pending yet (the runtime is looked up only then: most
    /// candidates finish at their first poll, and the lookup clones the runtime's handle).
    NotYet,
    Armed(Pin<Box<tokio::time::Sleep>>),
    NoRuntime,
}

impl<R> Future for CandidateRun<'_, R> {
    type Output = (&'static str, Ran<R>, Duration);

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.get_mut();
        let start = this.start;
        let result = match Pin::new(&mut this.fut).poll(cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => {
                if let Timer::NotYet = this.timer {
                    this.timer = if tokio::runtime::Handle::try_current().is_ok() {
                        let left = this.timeout.saturating_sub(start.elapsed());
                        Timer::Armed(Box::pin(tokio::time::sleep(left)))
                    } else {
                        Timer::NoRuntime
                    };
                }
                match &mut this.timer {
                    Timer::Armed(sleep) => match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => None,
                        Poll::Pending => return Poll::Pending,
                    },
                    _ => return Poll::Pending,
                }
            }
        };
        let elapsed = start.elapsed();
        let ran = match result {
            // A candidate that blocked its thread past the timeout could not be cancelled (and
            // held the caller meanwhile): its late value is a timeout all the same. Use
            // `candidate_blocking` for blocking work.
            Some(Ok(_)) if elapsed > this.timeout => Ran::Timeout,
            Some(Ok(v)) => Ran::Value(v),
            Some(Err(p)) => Ran::Panic(panic_message(p.as_ref())),
            None => Ran::Timeout,
        };
        Poll::Ready((this.name, ran, elapsed))
    }
}

/// What becomes of the control's value and the run (when sampled in) once a run is over.
trait Finish<R> {
    type Output;
    fn finish(self, value: R, run: Option<RunResult>) -> Self::Output;
}

/// A closure as a [`Finish`].
struct FinishWith<F>(F);

impl<R, T, F: FnOnce(R, Option<RunResult>) -> T> Finish<R> for FinishWith<F> {
    type Output = T;
    fn finish(self, value: R, run: Option<RunResult>) -> T {
        (self.0)(value, run)
    }
}

/// `run().await`'s finish: the value, after raising a failed run when raising is on (this
/// experiment's setting, else the thread's, else the process's).
struct RaiseAfter(Option<bool>);

impl<R> Finish<R> for RaiseAfter {
    type Output = R;
    fn finish(self, value: R, run: Option<RunResult>) -> R {
        if let Some(run) = &run {
            crate::contain::raise_if_failed(run, self.0);
        }
        value
    }
}

pin_project_lite::pin_project! {
    /// The future of an async experiment's [`run`](AsyncExperiment::run) and
    /// [`run_eq`](AsyncExperiment::run_eq): the control's value (or `Result`) when awaited.
    /// Not sampled in, it is the control alone; sampled in, it holds the boxed run (the
    /// control, the candidates, judging and publishing). A named future rather than an
    /// `async fn`'s: each `async fn` layer held the experiment beside its own state and moved
    /// it on every call.
    #[must_use = "an experiment does nothing until it is awaited"]
    pub struct RunFuture<'a, R, F: Future<Output = R>, K> {
        #[pin]
        state: RunState<'a, R, F, K>,
    }
}

pin_project_lite::pin_project! {
    #[project = RunStateProj]
    enum RunState<'a, R, F: Future<Output = R>, K> {
        Control { #[pin] control: F },
        Sampled { run: Pin<Box<SampledRun<'a, R, F, K, RaiseAfter>>> },
    }
}

impl<'a, R: Send + 'a, F: Future<Output = R>, K: ArmKind<R>> Future for RunFuture<'a, R, F, K> {
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<R> {
        match self.project().state.project() {
            RunStateProj::Control { control } => control.poll(cx),
            RunStateProj::Sampled { run } => run.as_mut().poll(cx),
        }
    }
}

impl<R, F: Future<Output = R>, K> std::fmt::Debug for RunFuture<'_, R, F, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            RunState::Control { .. } => "not sampled in",
            RunState::Sampled { .. } => "sampled in",
        };
        f.debug_struct("RunFuture").field("state", &state).finish()
    }
}

/// The candidates' side of a sampled-in run (each running, then holding its output until
/// judged).
enum CandidateRuns<'a, R> {
    /// Before the first poll: the candidates and their timeout.
    NotStarted(crate::experiment::Arms<AsyncArm<'a, R>>, Duration),
    /// One candidate (the common case: no vector for it or for its result).
    One(MaybeDone<CandidateRun<'a, R>>),
    Many(MaybeDone<JoinAll<CandidateRun<'a, R>>>),
}

pin_project_lite::pin_project! {
    /// A sampled-in run: the control and the candidates polled together (the control first),
    /// then judged and published. Written by hand, not as an `async fn`, so that it is no larger
    /// than its parts (an `async fn` keeps its arguments and its locals apart, builds its joins
    /// on the stack and moves them in; moving the run's future into its box and its parts into
    /// place was the largest single cost of an async run).
    struct SampledRun<'a, R, F: Future<Output = R>, K, Fin> {
        #[pin]
        control: futures_util::future::CatchUnwind<AssertUnwindSafe<F>>,
        control_done: Option<ControlRun<R>>,
        arms: CandidateRuns<'a, R>,
        x: Box<Extras<'a, R, AsyncArm<'a, R>>>,
        settings: &'static crate::settings::ExperimentSettings,
        name: &'static str,
        diff: DiffFn<R>,
        // The run's start (one clock reading: the start of every arm, the run's timestamp and
        // the candidates' deadline) and its timestamp, taken at the first poll.
        started: Option<(Tick, u64)>,
        finish: Option<Fin>,
        kind: PhantomData<K>,
    }
}

impl<'a, R, F, K, Fin> Future for SampledRun<'a, R, F, K, Fin>
where
    R: Send + 'a,
    F: Future<Output = R>,
    K: ArmKind<R>,
    Fin: Finish<R>,
{
    type Output = Fin::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Fin::Output> {
        use std::task::Poll;
        let this = self.project();
        let (start, started_at_ms) = match *this.started {
            Some(started) => started,
            None => {
                this.settings.count_run();
                crate::contain::install_panic_hook();
                this.x.before();
                let start = Tick::now();
                let started = (start, start.epoch_ms());
                *this.started = Some(started);
                if let CandidateRuns::NotStarted(arms, timeout) = this.arms {
                    let timeout = *timeout;
                    *this.arms = match std::mem::take(arms).into_single() {
                        Ok((name, arm)) => {
                            CandidateRuns::One(maybe_done(run_candidate(name, arm, timeout, start)))
                        }
                        Err(many) => CandidateRuns::Many(maybe_done(join_all(
                            many.into_iter()
                                .map(|(name, arm)| run_candidate(name, arm, timeout, start)),
                        ))),
                    };
                }
                started
            }
        };
        if this.control_done.is_none() {
            if let Poll::Ready(r) = this.control.poll(cx) {
                *this.control_done = Some((r, start.elapsed()));
            }
        }
        let arms_done = match this.arms {
            CandidateRuns::One(run) => Pin::new(run).poll(cx).is_ready(),
            CandidateRuns::Many(runs) => Pin::new(runs).poll(cx).is_ready(),
            CandidateRuns::NotStarted(..) => unreachable!("the candidates start at the first poll"),
        };
        if !arms_done {
            return Poll::Pending;
        }
        let Some((control, wall)) = this.control_done.take() else {
            return Poll::Pending;
        };
        let (name, diff) = (*this.name, *this.diff);
        let x = &mut **this.x;
        let run = match this.arms {
            CandidateRuns::One(run) => judge::<R, K, _>(
                x,
                name,
                started_at_ms,
                (&control, wall),
                Pin::new(run).take_output(),
                diff,
            ),
            CandidateRuns::Many(runs) => judge::<R, K, _>(
                x,
                name,
                started_at_ms,
                (&control, wall),
                Pin::new(runs).take_output().into_iter().flatten(),
                diff,
            ),
            CandidateRuns::NotStarted(..) => unreachable!("the candidates start at the first poll"),
        };
        let Some(finish) = this.finish.take() else {
            unreachable!("a sampled run finishes once: its control result was taken above")
        };
        match control {
            Ok(v) => Poll::Ready(finish.finish(v, Some(run))),
            Err(payload) => resume_unwind(payload),
        }
    }
}

fn judge<R, K: ArmKind<R>, A>(
    x: &mut Extras<'_, R, A>,
    experiment: &'static str,
    started_at_ms: u64,
    (control, wall): (&std::thread::Result<R>, Duration),
    ran: impl IntoIterator<Item = (&'static str, Ran<R>, Duration)>,
    diff: DiffFn<R>,
) -> RunResult {
    let control_ref = match control {
        Ok(v) => Ok(v),
        Err(p) => Err(panic_message(p.as_ref())),
    };
    let run = {
        let judge = x.judge::<K>(diff);
        let control_obs = observe_control::<R, K, A>(x, &control_ref, (wall, None));
        let candidates = ran
            .into_iter()
            .map(|(name, result, wall)| {
                let control = control_ref.as_ref().copied().map_err(|s| s.as_str());
                x.observe_candidate(&judge, control, name, &result, wall, None)
            })
            .collect();
        RunResult {
            experiment,
            started_at_ms,
            context: std::mem::take(&mut x.context),
            control: control_obs,
            candidates,
        }
    };
    x.finish(&run);
    run
}

impl<R, F, K> AsyncExperiment<'static, R, F, K>
where
    R: Clone + Send + Sync + 'static,
    F: Future<Output = R>,
    K: ArmKind<R> + Send + 'static,
{
    /// Returns as soon as the control finishes; candidates run in a background task and are
    /// compared there. At most the experiment's in-flight bound of such runs exist at once
    /// ([`ExperimentSettings::set_max_in_flight`](crate::ExperimentSettings::set_max_in_flight));
    /// beyond it a run is shed: only the control runs, and the shed is counted and published.
    async fn detached_inner(self, diff: DiffFn<R>) -> R {
        let Some(mut x) = self.extras else {
            return self.control.await;
        };
        let settings = self.gate.settings;
        let name = self.gate.name;
        let permit = match tokio::runtime::Handle::try_current() {
            Ok(_) => settings.in_flight.clone().try_acquire_owned().ok(),
            Err(_) => None,
        };
        let Some(permit) = permit else {
            settings.count_shed();
            match &x.publisher {
                Some(p) => shed_guarded(p.as_ref(), name),
                None => shed_guarded(default_publisher().as_ref(), name),
            }
            return self.control.await;
        };
        settings.count_run();
        crate::contain::install_panic_hook();
        x.before();
        let start = Tick::now();
        let started_at_ms = start.epoch_ms();
        let timeout = self.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel::<ControlRun<R>>();
        let candidates = std::mem::take(&mut x.candidates);
        // Candidates start now, concurrently with the control, and outlive this call.
        tokio::spawn(async move {
            let ran = join_all(
                candidates
                    .into_iter()
                    .map(|(name, arm)| run_candidate(name, arm, timeout, start)),
            )
            .await;
            // A dropped sender means the caller was cancelled before the control finished.
            if let Ok((control, wall)) = rx.await {
                judge::<R, K, _>(&mut x, name, started_at_ms, (&control, wall), ran, diff);
            }
            drop(permit);
        });
        let t = Instant::now();
        let control = AssertUnwindSafe(self.control).catch_unwind().await;
        let wall = t.elapsed();
        match control {
            Ok(v) => {
                let _ = tx.send((Ok(v.clone()), wall));
                v
            }
            Err(payload) => {
                let msg = panic_message(payload.as_ref());
                let _ = tx.send((Err(Box::new(msg)), wall));
                resume_unwind(payload)
            }
        }
    }
}

impl<'a, R: Send + 'a, F: Future<Output = R>> AsyncExperiment<'a, R, F, Plain> {
    /// Awaits the control and the candidates together; returns the control's value.
    pub fn run(self) -> RunFuture<'a, R, F, Plain>
    where
        R: crate::Diffable,
    {
        self.run_value(serde_diff::<R>)
    }

    /// Like [`run`](Self::run) but a mismatch, candidate error, panic or timeout is an `Err`
    /// (for tests).
    pub async fn run_strict(self) -> Result<R, MismatchError<R>>
    where
        R: crate::Diffable,
    {
        self.strict(serde_diff::<R>).await
    }

    /// Runs and also returns the run (when sampled in).
    pub async fn run_observed(self) -> (R, Option<RunResult>)
    where
        R: crate::Diffable,
    {
        self.run_inner(serde_diff::<R>, |v, run| (v, run)).await
    }
}

impl<'a, R: PartialEq + Debug + Send + 'a, F: Future<Output = R>> AsyncExperiment<'a, R, F, Plain> {
    /// Like [`run`](Self::run), comparing with `PartialEq` for results that are not `Serialize`.
    pub fn run_eq(self) -> RunFuture<'a, R, F, Plain> {
        self.run_value(eq_diff::<R>)
    }

    /// Like [`run_strict`](Self::run_strict), comparing with `PartialEq`.
    pub async fn run_strict_eq(self) -> Result<R, MismatchError<R>> {
        self.strict(eq_diff::<R>).await
    }
}

impl<'a, R: Send + 'a, F: Future<Output = R>> AsyncExperiment<'a, R, F, Plain> {
    /// Custom equality (Scientist's `compare`).
    pub fn compare(mut self, f: impl Fn(&R, &R) -> bool + Send + Sync + 'a) -> Self {
        if let Some(x) = &mut self.extras {
            x.compare = Some(Box::new(f));
        }
        self
    }
}

impl<R, F> AsyncExperiment<'static, R, F, Plain>
where
    R: crate::Diffable + Clone + Send + Sync + 'static,
    F: Future<Output = R>,
{
    /// Returns the control's value as soon as the control is done; candidates finish in the
    /// background, shed beyond the in-flight bound
    /// ([`ExperimentSettings::set_max_in_flight`](crate::ExperimentSettings::set_max_in_flight)).
    pub async fn run_detached(self) -> R {
        self.detached_inner(serde_diff::<R>).await
    }
}

impl<R, F> AsyncExperiment<'static, R, F, Plain>
where
    R: PartialEq + Debug + Clone + Send + Sync + 'static,
    F: Future<Output = R>,
{
    /// Like [`run_detached`](Self::run_detached), comparing with `PartialEq`.
    pub async fn run_detached_eq(self) -> R {
        self.detached_inner(eq_diff::<R>).await
    }
}

impl<'a, V: Send + 'a, E: Debug + Send + 'a, F: Future<Output = Result<V, E>>>
    AsyncExperiment<'a, Result<V, E>, F, Fallible>
{
    /// Custom equality of `Ok` values.
    pub fn compare(mut self, f: impl Fn(&V, &V) -> bool + Send + Sync + 'a) -> Self {
        if let Some(x) = &mut self.extras {
            x.compare = Some(crate::compare::on_ok(f));
        }
        self
    }

    /// When both arms fail, decides whether the errors agree (default: equal `Debug` text).
    pub fn compare_errors(mut self, f: impl Fn(&E, &E) -> bool + Send + Sync + 'a) -> Self {
        if let Some(x) = &mut self.extras {
            x.compare_errors = Some(crate::compare::on_err(f));
        }
        self
    }
}

impl<'a, V: Send + 'a, E: Debug + Send + 'a, F: Future<Output = Result<V, E>>>
    AsyncExperiment<'a, Result<V, E>, F, Fallible>
{
    /// Awaits the control and the candidates together; returns the control's `Result`
    /// unchanged.
    pub fn run(self) -> RunFuture<'a, Result<V, E>, F, Fallible>
    where
        V: crate::Diffable,
    {
        self.run_value(serde_diff_ok::<V, E>)
    }

    /// Like [`run`](Self::run) but a candidate failure is an `Err` holding the control's
    /// `Result` (for tests).
    pub async fn run_strict(self) -> Result<Result<V, E>, MismatchError<Result<V, E>>>
    where
        V: crate::Diffable,
    {
        self.strict(serde_diff_ok::<V, E>).await
    }

    /// Runs and also returns the run (when sampled in).
    pub async fn run_observed(self) -> (Result<V, E>, Option<RunResult>)
    where
        V: crate::Diffable,
    {
        self.run_inner(serde_diff_ok::<V, E>, |v, run| (v, run))
            .await
    }
}

impl<
        'a,
        V: PartialEq + Debug + Send + 'a,
        E: Debug + Send + 'a,
        F: Future<Output = Result<V, E>>,
    > AsyncExperiment<'a, Result<V, E>, F, Fallible>
{
    /// Like [`run`](Self::run), comparing `Ok` values with `PartialEq`.
    pub fn run_eq(self) -> RunFuture<'a, Result<V, E>, F, Fallible> {
        self.run_value(eq_diff_ok::<V, E>)
    }
}

impl<V, E, F> AsyncExperiment<'static, Result<V, E>, F, Fallible>
where
    V: crate::Diffable + Clone + Send + Sync + 'static,
    E: Debug + Clone + Send + Sync + 'static,
    F: Future<Output = Result<V, E>>,
{
    /// Returns the control's `Result` as soon as the control is done; candidates finish in the
    /// background, shed beyond the in-flight bound.
    pub async fn run_detached(self) -> Result<V, E> {
        self.detached_inner(serde_diff_ok::<V, E>).await
    }
}

#[allow(dead_code)]
fn _assert_rules_send(_: &Rules, _: &dyn Publisher, _: Arc<()>) {}
