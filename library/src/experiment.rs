//! The builder and the sync run.

use crate::compare::{
    default_rules, eq_diff, eq_diff_ok, panic_message, serde_diff, serde_diff_ok, ArmKind, Check,
    DiffFn, Fallible, Judge, Plain, Ran,
};
use crate::publish::{default_publisher, publish_guarded, Publisher};
use crate::result::{
    CandidateObservation, ControlObservation, ControlOutcome, MismatchError, RunResult,
};
use crate::settings::{self, percent_to_threshold, ExperimentSettings, FULL};
use crate::tick::Tick;
use shadowdiff_differ::Rules;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// Where an experiment stands before its control is given: deciding whether it runs.
///
/// Checks happen in this order, each only if the previous passed: the kill switch
/// ([`ExperimentSettings`]), [`enabled`](Self::enabled), [`run_if`](Self::run_if), then the
/// sampling percentage. The decision is taken once, by [`sampled`](Self::sampled) or the
/// `control` call, before any candidate is built.
#[must_use = "an experiment does nothing until its control is given and it is run"]
pub struct Experiment {
    name: &'static str,
    settings: &'static ExperimentSettings,
    /// `None` while undecided.
    on: Option<bool>,
    threshold: u64,
}

/// Disabled runs skip everything but the control; this is all they carry.
pub(crate) struct Gate {
    pub(crate) name: &'static str,
    pub(crate) settings: &'static ExperimentSettings,
}

impl Experiment {
    /// Looks up the live settings of `name` (a hash-map lookup; use
    /// [`with_settings`](Self::with_settings) with [`settings!`](crate::settings!) on hot paths).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: &'static str) -> Experiment {
        Self::with_settings(settings::settings(name))
    }

    /// Starts from settings already at hand: the cheapest entry (one relaxed load when disabled).
    #[inline]
    pub fn with_settings(settings: &'static ExperimentSettings) -> Experiment {
        Experiment {
            name: settings.name(),
            settings,
            on: if settings.is_enabled() {
                None
            } else {
                Some(false)
            },
            threshold: FULL,
        }
    }

    /// Code-level switch (Scientist's `enabled?`), on top of the runtime kill switch.
    #[inline]
    pub fn enabled(mut self, enabled: bool) -> Self {
        if !enabled {
            self.on = Some(false);
        }
        self
    }

    /// Runs the candidates only when `condition` says so; not called when already off.
    #[inline]
    pub fn run_if(mut self, condition: impl FnOnce() -> bool) -> Self {
        if self.on.is_none() && !condition() {
            self.on = Some(false);
        }
        self
    }

    /// Percentage of calls (0–100) that run the candidates; a runtime
    /// [`set_percent`](ExperimentSettings::set_percent) overrides it. Default 100.
    #[inline]
    pub fn percent(mut self, percent: f64) -> Self {
        self.threshold = percent_to_threshold(percent);
        self
    }

    /// Decides (once) whether this call runs candidates. Use it to skip preparing their inputs.
    #[inline]
    pub fn sampled(&mut self) -> bool {
        match self.on {
            Some(on) => on,
            None => {
                let on = self.settings.sample(self.threshold);
                self.on = Some(on);
                on
            }
        }
    }

    // Inline (with `sampled`): not generic, so without the attribute callers in other crates
    // made an out-of-line call here, most of a disabled call's cost (benches/experiment.rs
    // `disabled`: ~3 ns over direct before, see docs/library-performance.md).
    #[inline]
    fn decide(mut self) -> (Gate, bool) {
        let on = self.sampled();
        (
            Gate {
                name: self.name,
                settings: self.settings,
            },
            on,
        )
    }

    /// The code path whose result is returned. Its results are compared as values.
    #[inline]
    pub fn control<'a, R, C: FnOnce() -> R>(self, control: C) -> SyncExperiment<'a, R, C, Plain> {
        SyncExperiment::start(self, control)
    }

    /// A control returning `Result`: `Err` is an error (see `compare_errors`), values are
    /// compared on the `Ok` type.
    #[inline]
    pub fn try_control<'a, V, E: Debug, C: FnOnce() -> Result<V, E>>(
        self,
        control: C,
    ) -> SyncExperiment<'a, Result<V, E>, C, Fallible> {
        SyncExperiment::start(self, control)
    }

    /// An async control; candidates run concurrently with it (see [`AsyncExperiment`](crate::AsyncExperiment)).
    #[inline]
    pub fn control_async<'a, F>(self, control: F) -> crate::AsyncExperiment<'a, F::Output, F, Plain>
    where
        F: std::future::Future,
        F::Output: Send + 'a,
    {
        crate::AsyncExperiment::start(self, control)
    }

    /// An async control returning `Result`.
    #[inline]
    pub fn try_control_async<'a, V, E, F>(
        self,
        control: F,
    ) -> crate::AsyncExperiment<'a, Result<V, E>, F, Fallible>
    where
        V: Send + 'a,
        E: Debug + Send + 'a,
        F: std::future::Future<Output = Result<V, E>>,
    {
        crate::AsyncExperiment::start(self, control)
    }

    #[inline]
    pub(crate) fn into_parts(self) -> (Gate, bool) {
        self.decide()
    }
}

type AfterRun<'a> = Box<dyn FnOnce(&RunResult) + Send + 'a>;
type Clean<'a, R> = Box<dyn Fn(&R) -> serde_json::Value + Send + Sync + 'a>;

/// A few items, usually one, in the order they were given: the first inline, any more in a
/// vector. Holds a run's candidates and their results: one candidate is the common case, and a
/// vector for it cost an allocation and a free on every sampled-in run.
pub(crate) struct Few<T> {
    first: Option<T>,
    rest: Vec<T>,
}

/// A run's candidates: name and arm.
pub(crate) type Arms<A> = Few<(&'static str, A)>;

impl<T> Few<T> {
    pub(crate) const fn new() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push(item);
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The only item, or all of them back when there are several (or none).
    pub(crate) fn into_single(self) -> Result<T, Self> {
        match self.first {
            Some(first) if self.rest.is_empty() => Ok(first),
            first => Err(Self {
                first,
                rest: self.rest,
            }),
        }
    }
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) type FewIter<T> = std::iter::Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;

impl<T> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter = FewIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

/// Everything a sampled-in run needs besides its arms; allocated only when sampled in.
pub(crate) struct Extras<'a, R, A> {
    pub(crate) candidates: Arms<A>,
    pub(crate) context: Vec<(&'static str, String)>,
    pub(crate) publisher: Option<Arc<dyn Publisher>>,
    pub(crate) before_run: Option<Box<dyn FnOnce() + Send + 'a>>,
    pub(crate) after_run: Option<AfterRun<'a>>,
    pub(crate) compare: Option<Check<'a, R>>,
    pub(crate) compare_errors: Option<Check<'a, R>>,
    pub(crate) ignore: Vec<Check<'a, R>>,
    pub(crate) clean: Option<Clean<'a, R>>,
    pub(crate) rules: Option<Arc<Rules>>,
    /// This experiment's own `raise_on_mismatches`, over the thread's and the process's.
    pub(crate) raise: Option<bool>,
    /// Measure each sync arm's thread CPU time (two system calls per arm; off by default).
    pub(crate) cpu_time: bool,
}

impl<R, A> Extras<'_, R, A> {
    pub(crate) fn new() -> Self {
        Self {
            candidates: Few::new(),
            context: Vec::new(),
            publisher: None,
            before_run: None,
            after_run: None,
            compare: None,
            compare_errors: None,
            ignore: Vec::new(),
            clean: None,
            rules: None,
            raise: None,
            cpu_time: false,
        }
    }

    pub(crate) fn judge<K: ArmKind<R>>(&self, diff: DiffFn<R>) -> Judge<'_, '_, R, K> {
        Judge {
            diff,
            rules: self.rules.as_deref().unwrap_or_else(|| default_rules()),
            compare: self.compare.as_ref(),
            compare_errors: self.compare_errors.as_ref(),
            ignore: &self.ignore,
            kind: PhantomData,
        }
    }

    /// One candidate's observation: judged against the control, its value cleaned (always
    /// inlined: out of line it cost the sync run 2% more instructions).
    #[inline(always)]
    pub(crate) fn observe_candidate<K: ArmKind<R>>(
        &self,
        judge: &Judge<'_, '_, R, K>,
        control: Result<&R, &str>,
        name: &'static str,
        result: &Ran<R>,
        wall: Duration,
        cpu: Option<Duration>,
    ) -> CandidateObservation {
        let (outcome, differences, detail) = judge.judge(control, result);
        let value = match result {
            Ran::Value(v) => self.clean(v),
            _ => None,
        };
        CandidateObservation {
            name,
            outcome,
            differences,
            detail,
            wall,
            cpu,
            value,
        }
    }

    /// The value as published, when there is a `clean` function (inline: most experiments
    /// have none, and the call to find that out was as long as the check).
    #[inline]
    pub(crate) fn clean(&self, value: &R) -> Option<serde_json::Value> {
        let clean = self.clean.as_ref()?;
        catch_unwind(AssertUnwindSafe(|| clean(value))).ok()
    }

    /// Publishes and calls `after_run`; nothing here can reach the caller.
    pub(crate) fn finish(&mut self, run: &RunResult) {
        match &self.publisher {
            Some(p) => publish_guarded(p.as_ref(), run),
            None => publish_guarded(default_publisher().as_ref(), run),
        }
        if let Some(after) = self.after_run.take() {
            let _ = catch_unwind(AssertUnwindSafe(|| after(run)));
        }
    }

    pub(crate) fn before(&mut self) {
        if let Some(before) = self.before_run.take() {
            let _ = catch_unwind(AssertUnwindSafe(before));
        }
    }
}

/// Defines the configuration methods shared by the sync and async experiments.
macro_rules! shared_methods {
    () => {
        /// Whether a failing run (mismatch, candidate error, panic or timeout) of this
        /// experiment panics on the caller's path after publishing, whatever
        /// [`set_raise_on_mismatches`](crate::set_raise_on_mismatches) says: `true` in tests
        /// that must fail on a mismatch. Applies to `run`/`run_eq` (not detached runs).
        #[inline]
        pub fn raise_on_mismatches(mut self, on: bool) -> Self {
            if let Some(x) = self.extras_mut() {
                x.raise = Some(on);
            }
            self
        }

        /// Key/value pairs published with the run (Scientist's `context`).
        #[inline]
        pub fn context(mut self, key: &'static str, value: impl ToString) -> Self {
            if let Some(x) = self.extras_mut() {
                x.context.push((key, value.to_string()));
            }
            self
        }

        /// Where this experiment's runs go (default: [`set_default_publisher`](crate::set_default_publisher)).
        #[inline]
        pub fn publisher(mut self, publisher: Arc<dyn Publisher>) -> Self {
            if let Some(x) = self.extras_mut() {
                x.publisher = Some(publisher);
            }
            self
        }

        /// Expensive setup needed only when candidates run (Scientist's `before_run`).
        #[inline]
        pub fn before_run(mut self, f: impl FnOnce() + Send + 'a) -> Self {
            if let Some(x) = self.extras_mut() {
                x.before_run = Some(Box::new(f));
            }
            self
        }

        /// Called with the run after it was published (panics are caught).
        #[inline]
        pub fn after_run(mut self, f: impl FnOnce(&RunResult) + Send + 'a) -> Self {
            if let Some(x) = self.extras_mut() {
                x.after_run = Some(Box::new(f));
            }
            self
        }

        /// Accepts a mismatch (or candidate error) when `f(control, candidate)` is true; the
        /// candidate is reported as `ignored`. Several may be given; any one suffices.
        #[inline]
        pub fn ignore(mut self, f: impl Fn(&R, &R) -> bool + Send + Sync + 'a) -> Self {
            if let Some(x) = self.extras_mut() {
                x.ignore.push(Box::new(f));
            }
            self
        }

        /// What is published for each arm's value (Scientist's `clean`), e.g. to drop secrets.
        #[inline]
        pub fn clean(mut self, f: impl Fn(&R) -> serde_json::Value + Send + Sync + 'a) -> Self {
            if let Some(x) = self.extras_mut() {
                x.clean = Some(Box::new(f));
            }
            self
        }

        /// Also measure each sync arm's thread CPU time (Scientist's `cpu_duration`). Off by
        /// default: it costs two system calls per arm, which dominates a fast experiment.
        #[inline]
        pub fn cpu_time(mut self, on: bool) -> Self {
            if let Some(x) = self.extras_mut() {
                x.cpu_time = on;
            }
            self
        }

        /// The differ's rules for serialized results (ignore paths, tolerances, array modes…),
        /// as for HTTP bodies but rooted at `result`.
        #[inline]
        pub fn rules(mut self, rules: Arc<Rules>) -> Self {
            if let Some(x) = self.extras_mut() {
                x.rules = Some(rules);
            }
            self
        }

        /// True when this call runs the candidates.
        #[inline]
        pub fn is_sampled(&self) -> bool {
            self.sampled_in()
        }
    };
}

pub(crate) use shared_methods;

/// A candidate after the first, boxed on its own.
type SyncArm<'a, R> = Box<dyn FnOnce() -> R + 'a>;

/// The first candidate of a sync run, kept in the allocation of the run's extras: a box of its
/// own cost an allocation and a free on every sampled-in run.
trait FirstArm<R> {
    fn is_set(&self) -> bool;
    /// Runs the candidate; called once, and only when [`is_set`](Self::is_set).
    fn call(&mut self) -> R;
}

impl<R, F: FnOnce() -> R> FirstArm<R> for Option<F> {
    #[inline]
    fn is_set(&self) -> bool {
        self.is_some()
    }

    #[inline]
    fn call(&mut self) -> R {
        match self.take() {
            Some(f) => f(),
            None => unreachable!("a candidate runs once"),
        }
    }
}

/// Extras given before any candidate.
struct NoArm;

impl<R> FirstArm<R> for NoArm {
    fn is_set(&self) -> bool {
        false
    }

    fn call(&mut self) -> R {
        unreachable!("no candidate to run")
    }
}

/// A sampled-in sync run's extras and its first candidate, in one allocation. Candidates after
/// the first are in `x.candidates`.
struct Sampled<'a, R, A: ?Sized> {
    x: Extras<'a, R, SyncArm<'a, R>>,
    first_name: &'static str,
    first: A,
}

type SampledBox<'a, R> = Box<Sampled<'a, R, dyn FirstArm<R> + 'a>>;

/// A sync experiment with its control; add candidates, then [`run`](Self::run).
#[must_use = "an experiment does nothing until it is run"]
pub struct SyncExperiment<'a, R, C, K> {
    gate: Gate,
    control: C,
    /// Whether this call runs the candidates (decided before the control was given).
    on: bool,
    /// Allocated, when `on`, by the first candidate (with it), or by an option given before
    /// any candidate. A plain flag and an `Option` (not one enum) keep the not-sampled path
    /// down to the flag: with an enum, its drop stayed an out-of-line call there.
    sampled: Option<SampledBox<'a, R>>,
    kind: PhantomData<K>,
}

impl<'a, R, C: FnOnce() -> R, K: ArmKind<R>> SyncExperiment<'a, R, C, K> {
    #[inline]
    fn start(exp: Experiment, control: C) -> Self {
        let (gate, on) = exp.into_parts();
        Self {
            gate,
            control,
            on,
            sampled: None,
            kind: PhantomData,
        }
    }

    /// A candidate code path. The closure is dropped unused when the call is not sampled in, so
    /// clone arguments inside it, not before.
    #[inline]
    pub fn candidate(mut self, name: &'static str, candidate: impl FnOnce() -> R + 'a) -> Self {
        if self.on {
            match &mut self.sampled {
                None => self.sampled = Some(Self::with_first(Extras::new(), name, candidate)),
                Some(s) if !s.first.is_set() => {
                    // Options given before the first candidate: they move into its allocation.
                    let x = std::mem::replace(&mut s.x, Extras::new());
                    self.sampled = Some(Self::with_first(x, name, candidate));
                }
                Some(s) => s.x.candidates.push((name, Box::new(candidate))),
            }
        }
        self
    }

    fn with_first(
        x: Extras<'a, R, SyncArm<'a, R>>,
        first_name: &'static str,
        first: impl FnOnce() -> R + 'a,
    ) -> SampledBox<'a, R> {
        Box::new(Sampled {
            x,
            first_name,
            first: Some(first),
        })
    }

    /// The extras, allocated (without a candidate) when there are none yet; `None` when not
    /// sampled in.
    #[inline]
    fn extras_mut(&mut self) -> Option<&mut Extras<'a, R, SyncArm<'a, R>>> {
        if !self.on {
            return None;
        }
        if self.sampled.is_none() {
            self.sampled = Some(Self::without_candidate());
        }
        self.sampled.as_deref_mut().map(|s| &mut s.x)
    }

    /// Extras for options given before any candidate (the first candidate moves them).
    #[cold]
    fn without_candidate() -> SampledBox<'a, R> {
        Box::new(Sampled {
            x: Extras::new(),
            first_name: "",
            first: NoArm,
        })
    }

    #[inline]
    fn sampled_in(&self) -> bool {
        self.on
    }

    shared_methods!();

    /// Runs the experiment with `diff` comparing values; returns the control's outcome
    /// (or resumes its panic) and the run, if sampled in.
    #[inline]
    fn run_inner(self, diff: DiffFn<R>) -> (R, Option<RunResult>) {
        // The not-sampled path stays inline and small; the rest is out of line.
        if !self.on {
            return ((self.control)(), None);
        }
        Self::run_sampled(self.gate, self.control, self.sampled, diff, |v, run| {
            (v, Some(run))
        })
    }

    /// [`run_inner`](Self::run_inner) for callers that want only the value: the not-sampled
    /// path then has no `Option<RunResult>` to drop (an out-of-line `drop_in_place` call there
    /// showed in the disabled bench), and the sampled path does not move the run (168 bytes)
    /// out to drop it.
    #[inline]
    fn run_value(self, diff: DiffFn<R>) -> R {
        if !self.on {
            return (self.control)();
        }
        let raise = self.sampled.as_ref().and_then(|s| s.x.raise);
        Self::run_sampled(
            self.gate,
            self.control,
            self.sampled,
            diff,
            move |v, run| {
                crate::contain::raise_if_failed(&run, raise);
                recycle(run);
                v
            },
        )
    }

    /// The sampled-in run; `finish` gets the control's value and the run (after publishing).
    #[inline(never)]
    fn run_sampled<T>(
        gate: Gate,
        control: C,
        sampled: Option<SampledBox<'a, R>>,
        diff: DiffFn<R>,
        finish: impl FnOnce(R, RunResult) -> T,
    ) -> T {
        // Dropped when the run is over, as the boxed extras were.
        let mut boxed;
        let mut bare;
        let (x, first) = match sampled {
            Some(s) => {
                boxed = s;
                let Sampled {
                    x,
                    first_name,
                    first,
                } = &mut *boxed;
                let first = if first.is_set() {
                    Some((*first_name, first))
                } else {
                    None
                };
                (x, first)
            }
            None => {
                bare = Extras::new();
                (&mut bare, None)
            }
        };
        gate.settings.count_run();
        crate::contain::install_panic_hook();
        x.before();
        // One clock reading ends an arm and starts the next (the TSC: the OS clock was a fifth
        // of a sampled-in run).
        let mut clock = Tick::now();
        let started_at_ms = clock.epoch_ms();

        let count = usize::from(first.is_some()) + x.candidates.len();
        // The control takes a random place among the candidates.
        let control_at = (crate::settings::random_u64() % (count as u64 + 1)) as usize;
        let mut ran = Few::new();
        let mut control_run = None;
        let mut control = Some(control);
        let cpu = x.cpu_time;
        if x.candidates.len() == 0 {
            // One candidate (or none): no vector, no shuffle.
            if let Some((name, arm)) = first {
                if control_at == 0 {
                    run_control(&mut control, &mut control_run, cpu, &mut clock);
                }
                ran.push(run_arm(name, || arm.call(), cpu, &mut clock));
            }
        } else {
            let mut arms = Vec::with_capacity(count);
            arms.extend(
                std::mem::take(&mut x.candidates)
                    .into_iter()
                    .map(|(name, arm)| (name, AnyArm::Boxed(arm))),
            );
            arms.extend(first.map(|(name, arm)| (name, AnyArm::First(arm))));
            crate::settings::shuffle(&mut arms);
            for (i, (name, arm)) in arms.into_iter().enumerate() {
                if i == control_at {
                    run_control(&mut control, &mut control_run, cpu, &mut clock);
                }
                ran.push(run_arm(name, || arm.call(), cpu, &mut clock));
            }
        }
        run_control(&mut control, &mut control_run, cpu, &mut clock);
        let Some((control_result, control_wall, control_cpu)) = control_run else {
            unreachable!("the control runs exactly once")
        };

        let run = {
            let judge = x.judge::<K>(diff);
            let control_ref = match &control_result {
                Ok(v) => Ok(v),
                Err(p) => Err(panic_message(p.as_ref())),
            };
            let control_obs =
                observe_control::<R, K, _>(x, &control_ref, (control_wall, control_cpu));
            let control_ok = control_ref.as_ref().copied().map_err(|s| s.as_str());
            let observe = |(name, result, wall, cpu): RanArm<R>| {
                x.observe_candidate(&judge, control_ok, name, &result, wall, cpu)
            };
            let mut candidates = observations(count);
            match ran.into_single() {
                Ok(one) => candidates.push(observe(one)),
                Err(many) => candidates.extend(many.into_iter().map(observe)),
            }
            RunResult {
                experiment: gate.name,
                started_at_ms,
                context: std::mem::take(&mut x.context),
                control: control_obs,
                candidates,
            }
        };
        x.finish(&run);
        match control_result {
            Ok(v) => finish(v, run),
            Err(payload) => resume_unwind(payload),
        }
    }

    fn strict(self, diff: DiffFn<R>) -> Result<R, MismatchError<R>> {
        match self.run_inner(diff) {
            (v, Some(run)) if run.has_failures() => Err(MismatchError {
                control: v,
                run: Box::new(run),
            }),
            (v, _) => Ok(v),
        }
    }
}

thread_local! {
    /// The observations vector of this thread's last run whose result was dropped here
    /// (`run`, `run_eq`), emptied, for the next run: its allocation and free were a sixth of a
    /// sampled-in run. Runs handed out (`run_observed`, `run_strict`) keep theirs.
    static SPARE: std::cell::Cell<Vec<CandidateObservation>> = const {
        std::cell::Cell::new(Vec::new())
    };
}

/// Kept only up to this many observations, so a thread holds at most a few hundred bytes.
const SPARE_MAX: usize = 4;

/// An empty vector for `count` observations: this thread's spare one when it is large enough.
#[inline]
fn observations(count: usize) -> Vec<CandidateObservation> {
    if count == 0 {
        return Vec::new();
    }
    match SPARE.try_with(std::cell::Cell::take) {
        Ok(spare) if spare.capacity() >= count => spare,
        _ => Vec::with_capacity(count),
    }
}

/// Keeps the run's observations vector, emptied, for this thread's next run.
#[inline]
fn recycle(run: RunResult) {
    let mut spare = run.candidates;
    if spare.capacity() == 0 || spare.capacity() > SPARE_MAX {
        return;
    }
    spare.clear();
    // After this thread's locals are gone (a run in another local's destructor) it is freed.
    let _ = SPARE.try_with(|s| s.set(spare));
}

/// An arm's result, wall and (when asked) thread CPU time.
type Timed<R> = (std::thread::Result<R>, Duration, Option<Duration>);

/// A candidate's name, what it did, its wall and CPU time.
type RanArm<R> = (&'static str, Ran<R>, Duration, Option<Duration>);

/// A candidate of a run with several: the first (in the extras' allocation) or a later one.
enum AnyArm<'r, 'a, R> {
    First(&'r mut (dyn FirstArm<R> + 'a)),
    Boxed(SyncArm<'a, R>),
}

impl<R> AnyArm<'_, '_, R> {
    fn call(self) -> R {
        match self {
            Self::First(arm) => arm.call(),
            Self::Boxed(arm) => arm(),
        }
    }
}

fn run_control<R, C: FnOnce() -> R>(
    control: &mut Option<C>,
    out: &mut Option<Timed<R>>,
    cpu_time: bool,
    clock: &mut Tick,
) {
    if let Some(c) = control.take() {
        *out = Some(timed(c, cpu_time, clock));
    }
}

/// Runs one candidate as a candidate (its panic caught and silent), timed.
fn run_arm<R>(
    name: &'static str,
    arm: impl FnOnce() -> R,
    cpu_time: bool,
    clock: &mut Tick,
) -> RanArm<R> {
    let (result, wall, cpu) = timed(|| crate::contain::as_candidate(arm), cpu_time, clock);
    let result = match result {
        Ok(v) => Ran::Value(v),
        Err(p) => Ran::Panic(panic_message(p.as_ref())),
    };
    (name, result, wall, cpu)
}

// Always inline: out of line it built the observation in one place and copied it out.
#[inline(always)]
pub(crate) fn observe_control<R, K: ArmKind<R>, A>(
    x: &Extras<'_, R, A>,
    control: &Result<&R, String>,
    (wall, cpu): (Duration, Option<Duration>),
) -> ControlObservation {
    let (outcome, detail, value) = match control {
        Ok(v) => match K::error_text(v) {
            Some(e) => (ControlOutcome::Error, Some(e), x.clean(v)),
            None => (ControlOutcome::Value, None, x.clean(v)),
        },
        Err(p) => (ControlOutcome::Panic, Some(p.clone()), None),
    };
    ControlObservation {
        outcome,
        detail,
        wall,
        cpu,
        value,
    }
}

/// Runs one arm, catching its panic, with wall and (when asked) thread CPU time. `clock` is the
/// reading the arm starts from; it is moved to the arm's end, where the next arm starts.
fn timed<R>(
    f: impl FnOnce() -> R,
    cpu_time: bool,
    clock: &mut Tick,
) -> (std::thread::Result<R>, Duration, Option<Duration>) {
    let cpu = if cpu_time {
        cpu_time::ThreadTime::try_now().ok()
    } else {
        None
    };
    let start = *clock;
    let r = catch_unwind(AssertUnwindSafe(f));
    *clock = Tick::now();
    let wall = start.until(*clock);
    let cpu = cpu.and_then(|c| c.try_elapsed().ok());
    (r, wall, cpu)
}

impl<'a, R, C: FnOnce() -> R> SyncExperiment<'a, R, C, Plain> {
    /// Runs and returns the control's value; results are diffed with the differ's engine.
    #[inline]
    pub fn run(self) -> R
    where
        R: crate::Diffable,
    {
        self.run_value(serde_diff::<R>)
    }

    /// Like [`run`](Self::run) but a mismatch, candidate error or panic is an `Err` (for tests).
    pub fn run_strict(self) -> Result<R, MismatchError<R>>
    where
        R: crate::Diffable,
    {
        self.strict(serde_diff::<R>)
    }

    /// Runs and also returns the run (when sampled in).
    pub fn run_observed(self) -> (R, Option<RunResult>)
    where
        R: crate::Diffable,
    {
        self.run_inner(serde_diff::<R>)
    }
}

impl<'a, R: PartialEq + Debug, C: FnOnce() -> R> SyncExperiment<'a, R, C, Plain> {
    /// Like [`run`](Self::run), comparing with `PartialEq` for results that are not `Serialize`.
    #[inline]
    pub fn run_eq(self) -> R {
        self.run_value(eq_diff::<R>)
    }

    /// Like [`run_strict`](Self::run_strict), comparing with `PartialEq`.
    pub fn run_strict_eq(self) -> Result<R, MismatchError<R>> {
        self.strict(eq_diff::<R>)
    }
}

impl<'a, R, C: FnOnce() -> R> SyncExperiment<'a, R, C, Plain> {
    /// Custom equality (Scientist's `compare`); differences are still computed for reporting.
    pub fn compare(mut self, f: impl Fn(&R, &R) -> bool + Send + Sync + 'a) -> Self {
        if let Some(x) = self.extras_mut() {
            x.compare = Some(Box::new(f));
        }
        self
    }
}

impl<'a, V, E: Debug, C: FnOnce() -> Result<V, E>> SyncExperiment<'a, Result<V, E>, C, Fallible> {
    /// Custom equality of `Ok` values.
    pub fn compare(mut self, f: impl Fn(&V, &V) -> bool + Send + Sync + 'a) -> Self {
        if let Some(x) = self.extras_mut() {
            x.compare = Some(crate::compare::on_ok(f));
        }
        self
    }

    /// When both arms fail, decides whether the errors agree (default: equal `Debug` text).
    pub fn compare_errors(mut self, f: impl Fn(&E, &E) -> bool + Send + Sync + 'a) -> Self {
        if let Some(x) = self.extras_mut() {
            x.compare_errors = Some(crate::compare::on_err(f));
        }
        self
    }
}

impl<'a, V, E: Debug, C: FnOnce() -> Result<V, E>> SyncExperiment<'a, Result<V, E>, C, Fallible> {
    /// Runs and returns the control's `Result` unchanged.
    #[inline]
    pub fn run(self) -> Result<V, E>
    where
        V: crate::Diffable,
    {
        self.run_value(serde_diff_ok::<V, E>)
    }

    /// Like [`run`](Self::run) but a candidate failure is an `Err` holding the control's
    /// `Result` (for tests).
    pub fn run_strict(self) -> Result<Result<V, E>, MismatchError<Result<V, E>>>
    where
        V: crate::Diffable,
    {
        self.strict(serde_diff_ok::<V, E>)
    }

    /// Runs and also returns the run (when sampled in).
    pub fn run_observed(self) -> (Result<V, E>, Option<RunResult>)
    where
        V: crate::Diffable,
    {
        self.run_inner(serde_diff_ok::<V, E>)
    }
}

impl<'a, V: PartialEq + Debug, E: Debug, C: FnOnce() -> Result<V, E>>
    SyncExperiment<'a, Result<V, E>, C, Fallible>
{
    /// Like [`run`](Self::run), comparing `Ok` values with `PartialEq` (for values that are
    /// not `Serialize`).
    #[inline]
    pub fn run_eq(self) -> Result<V, E> {
        self.run_value(eq_diff_ok::<V, E>)
    }

    /// Like [`run_strict`](Self::run_strict), comparing `Ok` values with `PartialEq`.
    pub fn run_strict_eq(self) -> Result<Result<V, E>, MismatchError<Result<V, E>>> {
        self.strict(eq_diff_ok::<V, E>)
    }
}
