//! The runner's guard: a thread that never talks to the database, so that a
//! database which stops answering — no error, no reset, a query that simply
//! never returns (a proxy that stops relaying, a NAT that drops its state, a
//! server that lost the session) — cannot keep the two promises of §17 from
//! being kept on time:
//!
//! - once the main connection has not completed a round trip for `cut_off`,
//!   the children are killed, whatever the query in flight is doing: other
//!   runners count from this runner's last heartbeat, and must never start a
//!   job beside a live copy of it;
//! - once SIGTERM's `shutdown_grace` has passed (plus a margin, so that a
//!   loop that is merely busy gets to finish its own orderly shutdown) and the
//!   loop is still stuck, the children are killed and the process ends: their
//!   runs are recorded `interrupted` by whichever runner comes next.
//!
//! The loop reports each successful round trip ([`Liveness::contact`]); the
//! signal thread reports SIGTERM/SIGINT ([`Liveness::signalled`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;

/// How much later than the grace the guard ends a stuck runner; §17 allows 5 s.
const STUCK_MARGIN: Duration = Duration::from_secs(4);

/// What the guard watches, written by the loop and the signal thread.
#[derive(Debug)]
pub struct Liveness {
    origin: Instant,
    /// Milliseconds from `origin` to the last successful round trip.
    contact_ms: AtomicU64,
    /// Milliseconds from `origin` to the first SIGTERM/SIGINT, plus one (0: none).
    signal_ms: AtomicU64,
    /// Set while the guard holds the runner cut off: workers start no child.
    cut_off: AtomicBool,
    /// Set when the runner's loop has ended: the guard has nothing left to
    /// guard (an in-process runner, as the benchmark's, must not end its
    /// process a grace after it stopped).
    stopped: AtomicBool,
    /// The guard's thread, woken by a signal (it otherwise sleeps until the
    /// cut-off could next be reached).
    guard: std::sync::OnceLock<std::thread::Thread>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            origin: Instant::now(),
            contact_ms: AtomicU64::new(0),
            signal_ms: AtomicU64::new(0),
            cut_off: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            guard: std::sync::OnceLock::new(),
        }
    }
}

impl Liveness {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A round trip on the main connection just succeeded.
    pub fn contact(&self) {
        self.contact_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    /// How long since the last successful round trip.
    pub fn since_contact(&self) -> Duration {
        let last = self.contact_ms.load(Ordering::SeqCst);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }

    /// SIGTERM or SIGINT arrived (the first one counts).
    pub fn signalled(&self) {
        let _ = self.signal_ms.compare_exchange(
            0,
            self.now_ms() + 1,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        if let Some(guard) = self.guard.get() {
            guard.unpark();
        }
    }

    fn since_signal(&self) -> Option<Duration> {
        match self.signal_ms.load(Ordering::SeqCst) {
            0 => None,
            at => Some(Duration::from_millis(self.now_ms().saturating_sub(at - 1))),
        }
    }

    /// The runner's loop has ended: the guard ends too.
    pub fn runner_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(guard) = self.guard.get() {
            guard.unpark();
        }
    }

    /// Whether the runner is cut off from its database: no child may start.
    pub fn is_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::SeqCst)
    }
}

/// Start the guard thread.
pub fn spawn(shared: Arc<Shared>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("guard".into())
        .spawn(move || watch(&shared))?;
    Ok(())
}

/// The guard sleeps until the cut-off could first be reached (the last
/// contact plus `cut_off`) or the shutdown grace ends, whichever is sooner,
/// and is woken by a signal: on a healthy runner it wakes about once a
/// heartbeat, not twice a second. While cut off it looks every `tick` for
/// the contact to come back.
fn watch(shared: &Arc<Shared>) {
    let timings = *shared.timings();
    let grace = Duration::from_secs(u64::from(shared.config.runner.shutdown_grace_secs));
    let tick = (timings.heartbeat / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
    let liveness = &shared.liveness;
    let _ = liveness.guard.set(std::thread::current());
    loop {
        let mut wait = if liveness.is_cut_off() {
            tick
        } else {
            timings.cut_off.saturating_sub(liveness.since_contact())
        };
        if let Some(since) = liveness.since_signal() {
            wait = wait.min((grace + STUCK_MARGIN).saturating_sub(since));
        }
        // The clocks count in whole milliseconds: never spin on a zero.
        std::thread::park_timeout(wait.max(Duration::from_millis(5)));
        // The runner and its workers are gone (a runner in a longer-lived
        // process, as the benchmark's): nothing is left to guard, and a
        // guard left behind would end that process a grace after the stop.
        // (The listener thread holds `shared` until its next notification.)
        if Arc::strong_count(shared) == 1 || liveness.stopped.load(Ordering::SeqCst) {
            return;
        }
        let silent = liveness.since_contact();
        if silent >= timings.cut_off {
            let newly = !liveness.cut_off.swap(true, Ordering::SeqCst);
            // A query that never returns holds the loop (or the listener)
            // until its socket is closed: close it, so that the loss is
            // noticed now and the connection replaced (§18).
            if newly && shared.close_silent_connections() {
                shared.log.error(format!(
                    "The database has not answered for {:.1} s: closing the connection",
                    silent.as_secs_f64()
                ));
            }
            if newly && shared.running_children() > 0 {
                let secs = timings.cut_off.as_secs_f64();
                shared.log.error(format!(
                    "Cut off from the database for {secs} s: killing running jobs so that no job runs twice"
                ));
                shared.stop_all_children(&format!(
                    "Interrupted: the runner lost its database for {secs} s and killed the job"
                ));
            }
        } else {
            liveness.cut_off.store(false, Ordering::SeqCst);
        }
        if liveness
            .since_signal()
            .is_some_and(|since| since >= grace + STUCK_MARGIN)
        {
            shared.log.error(format!(
                "The database has not answered for {:.1} s and the shutdown grace is over: \
                 killing running jobs and stopping without it",
                silent.as_secs_f64()
            ));
            shared.stop_all_children(
                "Interrupted: the runner was shut down while its database did not answer",
            );
            // Give the process groups a moment to receive their signals.
            std::thread::sleep(Duration::from_millis(200));
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_and_signal_are_measured_from_when_they_were_reported() {
        let liveness = Liveness::default();
        assert!(liveness.since_signal().is_none());
        liveness.contact();
        assert!(liveness.since_contact() < Duration::from_secs(1));
        liveness.signalled();
        std::thread::sleep(Duration::from_millis(20));
        liveness.signalled();
        assert!(liveness
            .since_signal()
            .is_some_and(|d| d >= Duration::from_millis(20)));
    }
}
