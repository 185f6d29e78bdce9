//! Clock readings for timing arms: the raw counter of one calibrated quanta `Clock` (the TSC
//! where it is usable), scaled to nanoseconds only when a duration or a timestamp is needed.
//! `quanta::Instant::now()` checks a thread-local clock override and scales every reading; a
//! sampled-in run reads the clock three times and needs two durations.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock and where it stood against the wall clock when it was made.
struct Clock {
    clock: quanta::Clock,
    /// A raw reading and the Unix milliseconds at (about) the same time.
    base_raw: u64,
    base_ms: u64,
}

/// One lazily made clock for the process, with its wall-clock base: a run stamps its start from
/// a reading it takes anyway (the OS clock's readings were the largest cost of a sampled-in
/// run), and one initialisation check serves both.
#[inline]
fn clock() -> &'static Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let clock = quanta::Clock::new();
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let base_raw = clock.raw();
        Clock {
            clock,
            base_raw,
            base_ms,
        }
    })
}

/// One raw reading of the process's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    #[inline]
    pub(crate) fn now() -> Self {
        Self(clock().clock.raw())
    }

    /// Time from `self` to `later` (zero if `later` is not later, e.g. read on another core).
    #[inline]
    pub(crate) fn until(self, later: Tick) -> Duration {
        clock().clock.delta(self.0, later.0)
    }

    /// Milliseconds since the Unix epoch at this reading.
    #[inline]
    pub(crate) fn epoch_ms(self) -> u64 {
        let c = clock();
        if self.0 >= c.base_raw {
            c.base_ms + c.clock.delta_as_nanos(c.base_raw, self.0) / 1_000_000
        } else {
            c.base_ms
                .saturating_sub(c.clock.delta_as_nanos(self.0, c.base_raw) / 1_000_000)
        }
    }

    /// Time since `self`.
    #[inline]
    pub(crate) fn elapsed(self) -> Duration {
        self.until(Self::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_os_clock() {
        // The OS clock's readings bracket ours, so a preemption between two readings cannot
        // make this fail: ours lies within the OS clock's interval (up to calibration error).
        let outer = std::time::Instant::now();
        let tick = Tick::now();
        std::thread::sleep(Duration::from_millis(20));
        let ours = tick.elapsed();
        let theirs = outer.elapsed();
        assert!(ours >= Duration::from_millis(19), "{ours:?}");
        assert!(
            ours <= theirs + Duration::from_millis(1),
            "{ours:?} vs {theirs:?}"
        );
        assert_eq!(Tick::now().until(tick), Duration::ZERO);
    }

    #[test]
    fn epoch_milliseconds_follow_the_wall_clock() {
        let wall = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis()
        };
        let before = wall(SystemTime::now());
        let ours = u128::from(Tick::now().epoch_ms());
        let after = wall(SystemTime::now());
        // Calibration error and rounding: a few milliseconds either side.
        assert!(
            ours + 5 >= before && ours <= after + 5,
            "{before} {ours} {after}"
        );
        let t = Tick::now();
        assert!(Tick::now().epoch_ms() >= t.epoch_ms());
    }
}
