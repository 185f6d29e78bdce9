//! Clock readings for timing arms: the raw counter of one calibrated quanta `Clock` (the TSC
//! where it is usable), scaled to nanoseconds only when a duration or a timestamp is needed.
//! `quanta::Instant::now()` checks a thread-local clock override and scales every reading; a
//! sampled-in run reads the clock three times and needs two durations.

use std::sync::OnceLock;
use std::time::Duration;

fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// One raw reading of the process's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    #[inline]
    pub(crate) fn now() -> Self {
        Self(clock().raw())
    }

    /// Time from `self` to `later` (zero if `later` is not later, e.g. read on another core).
    #[inline]
    pub(crate) fn until(self, later: Tick) -> Duration {
        clock().delta(self.0, later.0)
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
}
