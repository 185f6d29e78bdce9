//! Runtime switches: a kill switch and a sampling percentage per experiment, changeable while the
//! process runs.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

/// `threshold` value meaning "no runtime override of the code's percentage".
const UNSET: u64 = u64::MAX;
/// Sampling compares a 32-bit random number with a threshold on this scale.
const SCALE: f64 = 4_294_967_296.0;

/// Environment variable naming experiments that start disabled (`name1,name2`), read at first use.
pub const DISABLED_ENV: &str = "SHADOWDIFF_EXPERIMENTS_DISABLED";

/// Bound on detached runs in flight per experiment unless changed.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Live settings of one experiment, shared by every call site with that name.
///
/// Obtain it with [`settings`] (registry lookup) or [`settings!`](crate::settings!) (cached in a
/// `static` at the call site, which is what makes a disabled experiment cost one atomic load).
#[derive(Debug)]
pub struct ExperimentSettings {
    name: &'static str,
    enabled: AtomicBool,
    /// Runtime percentage as a threshold on [`SCALE`], or [`UNSET`].
    threshold: AtomicU64,
    /// Detached runs may take a permit from here; none left means the run is shed.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    runs: AtomicU64,
    shed: AtomicU64,
}

impl ExperimentSettings {
    fn new(name: &'static str, enabled: bool) -> Self {
        Self {
            name,
            enabled: AtomicBool::new(enabled),
            threshold: AtomicU64::new(UNSET),
            in_flight: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            runs: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }

    /// The experiment's name.
    #[inline]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Kill switch: `false` makes every call site run only the control.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Whether call sites run candidates at all (see [`set_enabled`](Self::set_enabled)).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Overrides the percentage given in code (0.0–100.0; clamped).
    pub fn set_percent(&self, percent: f64) {
        self.threshold
            .store(percent_to_threshold(percent), Ordering::Relaxed);
    }

    /// Goes back to the percentage given in code.
    pub fn clear_percent(&self) {
        self.threshold.store(UNSET, Ordering::Relaxed);
    }

    /// The runtime percentage, if one was set.
    pub fn percent(&self) -> Option<f64> {
        match self.threshold.load(Ordering::Relaxed) {
            UNSET => None,
            t => Some(t as f64 / SCALE * 100.0),
        }
    }

    /// Bound on detached runs in flight; beyond it runs are shed (counted, not run).
    ///
    /// Applies to permits taken after the call; runs in flight keep theirs.
    pub fn set_max_in_flight(&self, max: usize) {
        let current = self.in_flight.available_permits();
        if max > current {
            self.in_flight.add_permits(max - current);
        } else {
            self.in_flight.forget_permits(current - max);
        }
    }

    /// Runs in which candidates were run (sampled in), since start.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Detached runs shed because the in-flight bound was reached, since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    pub(crate) fn count_run(&self) {
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Rolls the dice: the runtime percentage if set, else `code_threshold`.
    #[inline]
    pub(crate) fn sample(&self, code_threshold: u64) -> bool {
        let t = match self.threshold.load(Ordering::Relaxed) {
            UNSET => code_threshold,
            t => t,
        };
        if t == 0 {
            return false;
        }
        if t >= SCALE as u64 {
            return true;
        }
        roll(t)
    }
}

/// The dice itself, out of line so that the inlined `sample` stays a load and two compares
/// (kill switch, 0 % and 100 % never reach here).
#[inline(never)]
fn roll(threshold: u64) -> bool {
    u64::from(random_u32()) < threshold
}

pub(crate) fn percent_to_threshold(percent: f64) -> u64 {
    if percent.is_nan() {
        return 0;
    }
    (percent.clamp(0.0, 100.0) / 100.0 * SCALE) as u64
}

pub(crate) const FULL: u64 = SCALE as u64;

type Registry = RwLock<HashMap<&'static str, &'static ExperimentSettings>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(HashMap::new()))
}

fn disabled_by_env(name: &str) -> bool {
    static DISABLED: OnceLock<Vec<String>> = OnceLock::new();
    DISABLED
        .get_or_init(|| {
            std::env::var(DISABLED_ENV)
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|d| d == name)
}

/// The live settings of experiment `name`, created on first use (disabled when listed in
/// [`DISABLED_ENV`]).
///
/// Settings live for the whole process: there is one small allocation per experiment name.
pub fn settings(name: &str) -> &'static ExperimentSettings {
    if let Some(s) = registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
    {
        return s;
    }
    let mut map = registry().write().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = map.get(name) {
        return s;
    }
    // Leaked on purpose: settings are shared by `static` caches and never freed.
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let s: &'static ExperimentSettings = Box::leak(Box::new(ExperimentSettings::new(
        name,
        !disabled_by_env(name),
    )));
    map.insert(name, s);
    s
}

/// Names of every experiment seen so far.
pub fn experiments() -> Vec<&'static str> {
    let mut names: Vec<_> = registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .copied()
        .collect();
    names.sort_unstable();
    names
}

/// `&'static ExperimentSettings` for a literal name, looked up once per call site.
///
/// ```
/// let s = shadowdiff::settings!("checkout-v2");
/// s.set_percent(5.0);
/// assert_eq!(s.name(), "checkout-v2");
/// ```
#[macro_export]
macro_rules! settings {
    ($name:expr) => {{
        static CACHE: ::std::sync::OnceLock<&'static $crate::ExperimentSettings> =
            ::std::sync::OnceLock::new();
        *CACHE.get_or_init(|| $crate::settings($name))
    }};
}

/// Cheap thread-local xorshift; sampling needs speed, not quality.
pub(crate) fn random_u32() -> u32 {
    (random_u64() >> 32) as u32
}

pub(crate) fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// Fisher–Yates with the cheap generator.
pub(crate) fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (random_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trips_and_clamps() {
        let s = settings("settings-unit-percent");
        assert_eq!(s.percent(), None);
        s.set_percent(150.0);
        assert_eq!(s.percent(), Some(100.0));
        assert!(s.sample(0));
        s.set_percent(0.0);
        assert!(!s.sample(FULL));
        s.clear_percent();
        assert!(s.sample(FULL));
        assert!(std::ptr::eq(s, settings("settings-unit-percent")));
    }

    #[test]
    fn fifty_percent_samples_about_half() {
        let s = settings("settings-unit-half");
        s.set_percent(50.0);
        let n = (0..10_000).filter(|_| s.sample(FULL)).count();
        assert!((4_000..6_000).contains(&n), "{n}");
    }
}
