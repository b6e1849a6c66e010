//! The runner's liveness timings, as one value carried from the configuration
//! to the runner and into its SQL: how often it proves it is alive, when a
//! runner cut off from the database kills its children, when other runners
//! declare it dead, and how it backs off while reconnecting.
//!
//! The invariant that makes "no job ever runs twice at once" hold is checked
//! when the configuration is loaded: a cut-off runner must have killed its
//! children before anyone may declare it dead. Others count from its last
//! heartbeat, which is less than one heartbeat older than its last contact
//! with the database, hence `cut_off <= dead_after - heartbeat` (the defaults
//! sit exactly on that bound: 20 = 30 - 10; death is declared only once the
//! heartbeat is *older* than `dead_after`).
//!
//! The defaults are SPEC §4.6 and §10 (10 s, 20 s, 30 s; backoff from 0.5 s
//! doubling to 10 s). Every runner sharing a database should use the same
//! values; tests shrink them so that no test sleeps through 30 s.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How often a runner refreshes its heartbeat (and looks for dead
    /// runners' runs); also the longest an idle runner sleeps.
    pub heartbeat: Duration,
    /// Cut off from the database this long, a runner kills its children.
    pub cut_off: Duration,
    /// A runner whose lock is free and whose heartbeat is this old is dead.
    pub dead_after: Duration,
    /// The first reconnect wait; it doubles after each failed attempt…
    pub backoff_first: Duration,
    /// …up to this.
    pub backoff_max: Duration,
    /// A worker connection unused this long is closed, so that an idle
    /// runner holds only its main and LISTEN connections (§17).
    pub idle_close: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            heartbeat: Duration::from_secs(10),
            cut_off: Duration::from_secs(20),
            dead_after: Duration::from_secs(30),
            backoff_first: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            idle_close: Duration::from_secs(60),
        }
    }
}

impl Timings {
    /// Whether these timings keep a cut-off runner's children from running
    /// beside a copy started by another runner; the problem, when not.
    pub fn check(&self) -> Result<(), String> {
        if self.heartbeat.is_zero() || self.backoff_first.is_zero() {
            return Err("the heartbeat and the backoff must be longer than zero".into());
        }
        if self.cut_off + self.heartbeat > self.dead_after {
            return Err(format!(
                "cut_off ({} s) must not exceed dead_after ({} s) minus heartbeat ({} s), \
                 so that a runner cut off from the database kills its jobs before another \
                 runner may declare it dead",
                self.cut_off.as_secs_f64(),
                self.dead_after.as_secs_f64(),
                self.heartbeat.as_secs_f64()
            ));
        }
        if self.backoff_max < self.backoff_first {
            return Err("the longest backoff must not be shorter than the first".into());
        }
        Ok(())
    }

    /// The wait before reconnect attempt `attempt` (from 0): the first
    /// backoff, doubling, at most the longest.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_first
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_half_a_second_doubles_and_stays_at_ten() {
        let t = Timings::default();
        let waits: Vec<u128> = (0..8).map(|a| t.backoff(a).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
        assert_eq!(t.backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn the_defaults_are_the_specs_and_hold_the_invariant() {
        let t = Timings::default();
        assert_eq!(
            (t.heartbeat, t.cut_off, t.dead_after),
            (
                Duration::from_secs(10),
                Duration::from_secs(20),
                Duration::from_secs(30)
            )
        );
        assert_eq!(t.check(), Ok(()));
    }

    #[test]
    fn a_cut_off_beyond_dead_after_minus_heartbeat_is_refused() {
        let t = Timings {
            heartbeat: Duration::from_secs(1),
            cut_off: Duration::from_secs(2),
            dead_after: Duration::from_secs(3),
            ..Timings::default()
        };
        assert_eq!(t.check(), Ok(()));
        let bad = Timings {
            cut_off: Duration::from_secs(21),
            ..Timings::default()
        };
        assert!(bad.check().unwrap_err().contains("cut_off (21 s)"));
    }
}
