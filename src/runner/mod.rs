//! `manage scheduled_jobs_runner`: runs every job on its schedule.
//!
//! Shape: one blocking loop on the main thread, and everything that can wake
//! it — a NOTIFY on `manage_scheduled_jobs` (the listener thread), a run
//! that finished (a worker), SIGTERM/SIGINT (the signal thread) — arrives on
//! ONE channel. The loop sleeps on that channel with `recv_timeout` until the
//! earliest next run or the 10 s heartbeat, whichever comes first: no polling,
//! and no rounding to whole seconds.
//!
//! Exactly once: due jobs are claimed by a single statement (see
//! `store::claim_due`) that locks them with SKIP LOCKED, writes their
//! `running` rows and marks them running before it commits; a job marked
//! running is not due for anyone, so any number of runners can share a
//! database. The sleep is computed from the database's own clock (the
//! agenda query returns `clock_timestamp()`), so a host with a skewed clock
//! neither spins nor starts a job early. A runner claims and sleeps by only
//! the jobs its own registry defines: in a rolling deploy, a job that only
//! the new configuration has waits for a runner that has it, and never wakes
//! (nor is disabled by) an old one.
//!
//! Liveness: each runner has a row in `manage.runners`, holds a session
//! advisory lock on its main connection, and refreshes a heartbeat (every
//! 10 s by default; see `crate::timings`). At start and at every heartbeat it
//! looks for `running` rows of runners that are dead (lock free, heartbeat
//! older than `dead_after`) and records them `interrupted`, killing their
//! process group first when it is on this host.
//!
//! The core never prints: everything the runner says goes through its
//! [`Log`].

mod alerts;
mod guard;
mod listen;
mod log;
mod notify;
mod record;
mod recover;
mod trim;
mod worker;

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::db::socket::SocketHandle;
use crate::db::Target;
use crate::process::StopHandle;
use crate::registry::Registry;
use crate::store;
use crate::timings::Timings;

pub use log::{set_stderr_json, stderr_line, Entry, Format as LogFormat, Level, Log};

/// `application_name` of the runner's connections.
pub const APPLICATION_NAME: &str = "manage scheduled_jobs_runner";

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Run what is due, wait for it, and exit (for cron).
    pub once: bool,
    /// Skip migrations and sync at start-up.
    pub no_migrate: bool,
    /// Human lines or one JSON object per line (§15).
    pub log_format: LogFormat,
}

/// What wakes the loop.
pub enum Event {
    /// Something changed in the database (a NOTIFY arrived, or the listener
    /// reconnected and notifications may have been lost).
    Changed,
    /// A worker finished a claimed run.
    Finished(worker::Report),
    /// SIGTERM or SIGINT.
    Signal(i32),
}

/// What the workers share with the loop.
pub struct Shared {
    pub config: Config,
    pub registry: Registry,
    /// The names of the jobs the registry defines: the only ones claimed.
    pub defined: Vec<String>,
    pub target: Target,
    pub host: String,
    pub runner_id: i64,
    pub log: Log,
    /// The running children, to stop them at shutdown or when cut off.
    pub children: Mutex<HashMap<i64, StopHandle>>,
    /// Set at shutdown: workers claim nothing more.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The main connection's last round trip and the signals, for the guard.
    pub liveness: Arc<guard::Liveness>,
    /// Worker connections between runs, with when each was put back: closed
    /// once unused for `idle_close`, so that an idle runner holds only its
    /// main and LISTEN connections (§17).
    idle_connections: Mutex<Vec<(worker::Conn, Instant)>>,
    /// SQL jobs' connections between runs, likewise.
    idle_sql_connections: Mutex<Vec<(worker::SqlConn, Instant)>>,
    /// The sockets of the main and LISTEN connections, for the guard to
    /// close when the database falls silent (§18).
    main_socket: Mutex<Option<SocketHandle>>,
    listen_socket: Mutex<Option<SocketHandle>>,
    /// The runs this runner has claimed and not yet recorded: from the
    /// dispatch to the end of the worker's record. A `running` row of ours
    /// that is not here after a reconnection is a claim whose answer was
    /// lost with the old primary (§19), and is recorded interrupted.
    open_runs: Mutex<std::collections::HashSet<i64>>,
    /// This runner's runs of skip/replace jobs with an overlap slot (§21):
    /// while there are any, the loop watches the slots even with every
    /// worker busy, and the heartbeat looks for replace requests whose
    /// NOTIFY was lost.
    overlap_runs: Mutex<std::collections::HashSet<i64>>,
}

impl Shared {
    fn timings(&self) -> &Timings {
        &self.config.runner.timings
    }

    /// This runner, as it claims due jobs.
    fn claimant(&self) -> store::Claimant<'_> {
        store::Claimant {
            runner_id: self.runner_id,
            host: &self.host,
            tags: &self.config.runner.tags,
        }
    }

    /// Close the main and LISTEN connections from under whatever waits on
    /// them: the database has not answered for the cut-off. Both then fail,
    /// and reconnect as after any lost connection. True when one was closed.
    fn close_silent_connections(&self) -> bool {
        let mut closed = false;
        for socket in [&self.main_socket, &self.listen_socket] {
            if let Ok(mut socket) = socket.lock() {
                if let Some(handle) = socket.take() {
                    closed |= handle.shut_down();
                }
            }
        }
        closed
    }

    fn set_main_socket(&self, handle: Option<SocketHandle>) {
        if let Ok(mut socket) = self.main_socket.lock() {
            *socket = handle;
        }
    }

    fn set_listen_socket(&self, handle: Option<SocketHandle>) {
        if let Ok(mut socket) = self.listen_socket.lock() {
            *socket = handle;
        }
    }

    /// A claimed run is this runner's until its record is written.
    fn run_opened(&self, run_id: i64) {
        if let Ok(mut open) = self.open_runs.lock() {
            open.insert(run_id);
        }
    }

    fn run_closed(&self, run_id: i64) {
        if let Ok(mut open) = self.open_runs.lock() {
            open.remove(&run_id);
        }
    }

    fn is_run_open(&self, run_id: i64) -> bool {
        self.open_runs
            .lock()
            .map_or(true, |open| open.contains(&run_id))
    }

    fn watch_overlap(&self, run_id: i64) {
        if let Ok(mut runs) = self.overlap_runs.lock() {
            runs.insert(run_id);
        }
    }

    fn unwatch_overlap(&self, run_id: Option<i64>) {
        if let (Some(run_id), Ok(mut runs)) = (run_id, self.overlap_runs.lock()) {
            runs.remove(&run_id);
        }
    }

    fn watching_overlaps(&self) -> bool {
        self.overlap_runs.lock().is_ok_and(|runs| !runs.is_empty())
    }

    fn watched_overlap_runs(&self) -> Vec<i64> {
        self.overlap_runs
            .lock()
            .map(|runs| runs.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Stop one of this runner's runs for a new one (`overlap = "replace"`,
    /// §21), as a timeout stops it (an SQL job's statement is cancelled);
    /// it is then recorded `interrupted` with [`crate::job::REPLACED`]. A run
    /// this runner does not have (another's, or already over) is left alone.
    fn replace_run(&self, run_id: i64) {
        let handle = self
            .children
            .lock()
            .ok()
            .and_then(|children| children.get(&run_id).cloned());
        if let Some(handle) = handle {
            if !handle.stopped() {
                self.log.event(
                    Entry::info(format!("Stopping run {run_id} for a new run")).run_id(run_id),
                );
                handle.stop(crate::job::REPLACED);
            }
        }
    }

    fn stop_all_children(&self, reason: &str) {
        if let Ok(children) = self.children.lock() {
            for handle in children.values() {
                handle.stop(reason);
            }
        }
    }

    fn running_children(&self) -> usize {
        self.children.lock().map_or(0, |children| children.len())
    }

    /// A worker connection to reuse, the most recently used first.
    fn take_connection(&self) -> Option<worker::Conn> {
        self.idle_connections
            .lock()
            .ok()?
            .pop()
            .map(|(conn, _)| conn)
    }

    fn put_back_connection(&self, conn: worker::Conn) {
        if let Ok(mut idle) = self.idle_connections.lock() {
            idle.push((conn, Instant::now()));
        }
    }

    /// An SQL job's connection to reuse, the most recently used first.
    fn take_sql_connection(&self) -> Option<worker::SqlConn> {
        self.idle_sql_connections
            .lock()
            .ok()?
            .pop()
            .map(|(conn, _)| conn)
    }

    fn put_back_sql_connection(&self, conn: worker::SqlConn) {
        if let Ok(mut idle) = self.idle_sql_connections.lock() {
            idle.push((conn, Instant::now()));
        }
    }

    /// Close, at a heartbeat, the worker connections that would otherwise
    /// reach `idle_close` unused before the next one: closed after between
    /// `idle_close - heartbeat` and `idle_close`, never later, so that a
    /// runner with nothing running for `idle_close` holds only its main and
    /// LISTEN connections (§17), and no wake-up but the heartbeat's is needed.
    fn close_idle_connections(&self) {
        // And the adopted processes that have died since the last run ended.
        crate::process::reap_orphans();
        let timings = self.timings();
        let keep_below = timings.idle_close.saturating_sub(timings.heartbeat);
        if let Ok(mut idle) = self.idle_connections.lock() {
            idle.retain(|(_, since)| since.elapsed() < keep_below);
        }
        if let Ok(mut idle) = self.idle_sql_connections.lock() {
            idle.retain(|(_, since)| since.elapsed() < keep_below);
        }
    }
}

/// The one line a runner behind a transaction-mode pooler exits with (§19).
pub const NEEDS_A_SESSION: &str = "the runner needs a session of its own (LISTEN and a session lock): connect it directly or through session pooling";

pub fn run(mut config: Config, registry: Registry, options: Options) -> anyhow::Result<bool> {
    // `runner.database_url` bypasses the pooler the CLI and the web page use:
    // every connection of the runner (and of its children) goes there.
    if let Some(url) = config.runner.database_url.clone() {
        config.database_url = Some(url);
    }
    let log = Log::from_env(config.timezone, options.log_format);
    // Signals first: SIGTERM while the database is still unreachable at
    // start-up must end the runner cleanly too.
    let (events_tx, events_rx) = std::sync::mpsc::channel();
    let liveness = Arc::new(guard::Liveness::default());
    listen::spawn_signals(events_tx.clone(), Arc::clone(&liveness))?;
    let Some((mut client, target, db_host)) = connect_with_retry(&config, &log, &events_rx)? else {
        log.info("Stopping before the database was reached");
        return Ok(true);
    };
    let main_socket = SocketHandle::last_connected();
    if crate::db::shares_its_backend(&target, &mut client)? {
        return Err(crate::error::BadInput::new(NEEDS_A_SESSION).into());
    }
    if !options.no_migrate {
        let (applied, lines) = crate::db::migrate_and_sync(
            &mut client,
            &registry,
            &config,
            &crate::ops::Actor::runner(),
        )?;
        for name in applied {
            log.info(format!("Applied migration {name}"));
        }
        for line in lines {
            log.info(line);
        }
    }
    let host = crate::host::short_host_name();
    let pid = std::process::id() as i32;
    let tags = &config.runner.tags;
    let defined: Vec<String> = registry.jobs().map(|job| job.name.clone()).collect();
    let (runner_id, _) = store::register_runner(&mut client, &host, pid, tags, &defined)
        .context("registering the runner")?;
    if tags.is_empty() {
        log.info(format!("Runner {runner_id} started on {host} (pid {pid})"));
    } else {
        log.info(format!(
            "Runner {runner_id} started on {host} (pid {pid}) with tags {}",
            tags.join(", ")
        ));
    }
    // A job with its own `notify` (§20) still alerts without a global one.
    if config.notifications.email.is_none()
        && config.jobs.values().all(|j| j.settings.notify.is_none())
    {
        log.warn("notifications are disabled: no recipient (set notifications.email or SCHEDULED_JOBS_EMAIL)");
    }

    let shared = Arc::new(Shared {
        config,
        defined,
        registry,
        target,
        host,
        runner_id,
        log,
        children: Mutex::new(HashMap::new()),
        overlap_runs: Mutex::default(),
        stopping: std::sync::atomic::AtomicBool::new(false),
        liveness,
        idle_connections: Mutex::new(Vec::new()),
        idle_sql_connections: Mutex::new(Vec::new()),
        main_socket: Mutex::new(main_socket),
        listen_socket: Mutex::new(None),
        open_runs: Mutex::new(std::collections::HashSet::new()),
    });
    shared.liveness.contact();
    guard::spawn(Arc::clone(&shared))?;
    // However this function ends from here on, the guard ends with it.
    let _guard_ends = GuardEnds(Arc::clone(&shared.liveness));
    listen::spawn_listener(Arc::clone(&shared), events_tx.clone())?;
    let pool = worker::Pool::start(Arc::clone(&shared), events_tx.clone());
    // Start-up is over: its code need not stay resident (see `trim`).
    trim::drop_startup_code();
    let notifier = notify::Notifier::from_env();
    notifier.send(&format!(
        "READY=1\nSTATUS=Runner {runner_id} connected and listening"
    ));

    let mut runner = Loop {
        next_watchdog: notifier.watchdog_every.map(|_| Instant::now()),
        notifier,
        shared,
        client,
        events: events_rx,
        pool,
        in_flight: 0,
        options,
        all_succeeded: true,
        last_sleep_log: None,
        claim_at: None,
        shutdown: None,
        prepared: store::Prepared::default(),
        db_host,
    };
    let result = runner.run();
    runner.notifier.send("STOPPING=1");
    if let Err(e) = store::runner_stopped(&mut runner.client, runner.shared.runner_id) {
        runner.shared.log.error(format!(
            "could not record the runner's stop: {}",
            crate::db::describe_error(&e)
        ));
    }
    // The idle connections go with the runner, not with the last thread
    // that still holds `shared` (the guard sleeps up to a cut-off).
    if let Ok(mut idle) = runner.shared.idle_connections.lock() {
        idle.clear();
    }
    if let Ok(mut idle) = runner.shared.idle_sql_connections.lock() {
        idle.clear();
    }
    result?;
    Ok(runner.all_succeeded)
}

/// Tells the guard the runner has stopped, when dropped.
struct GuardEnds(Arc<guard::Liveness>);

impl Drop for GuardEnds {
    fn drop(&mut self) {
        self.0.runner_stopped();
    }
}

/// Connect, retrying with backoff while the database is unreachable; a bad
/// configuration (a malformed URL) fails at once.
/// None when a signal said to stop first.
fn connect_with_retry(
    config: &Config,
    log: &Log,
    events: &Receiver<Event>,
) -> anyhow::Result<Option<(postgres::Client, Target, String)>> {
    let mut attempt = 0;
    loop {
        match crate::db::connect_at(config, APPLICATION_NAME) {
            Ok(connected) => {
                if let Some(notice) = connected.1.notice() {
                    log.info(notice);
                }
                return Ok(Some(connected));
            }
            // A malformed URL or an embedded cluster that cannot be made
            // will not get better by waiting.
            Err(e)
                if e.downcast_ref::<crate::error::BadInput>().is_some()
                    || e.downcast_ref::<crate::db::embedded::EmbeddedError>()
                        .is_some() =>
            {
                return Err(e)
            }
            Err(e) => {
                let wait = config.runner.timings.backoff(attempt);
                match e.downcast_ref::<crate::db::Standby>() {
                    Some(standby) => log.error(crate::db::Standby::runner_line(&standby.host)),
                    None => log.error(format!("{e:#}; retrying in {:.1} s", wait.as_secs_f64())),
                }
                if let Ok(Event::Signal(_)) = events.recv_timeout(wait) {
                    return Ok(None);
                }
                attempt += 1;
            }
        }
    }
}

/// The longest wait between two attempts to reconnect, whatever the
/// backoff: a runner is back within this of its database answering again
/// (§18 asks 5 s), and a failed attempt costs a refused connection.
pub const RECONNECT_WAIT_MAX: Duration = Duration::from_secs(2);

/// How soon the loop looks again at a job that is due but could not be
/// claimed: another session holds its row (a claim not yet committed, a
/// `jobs configure` in progress).
const LOCKED_RETRY: Duration = Duration::from_millis(2);

struct Loop {
    shared: Arc<Shared>,
    client: postgres::Client,
    events: Receiver<Event>,
    pool: worker::Pool,
    in_flight: usize,
    options: Options,
    all_succeeded: bool,
    last_sleep_log: Option<Option<DateTime<Utc>>>,
    /// The due instant the loop sleeps until: a sleep that ends there (not
    /// one cut short by the heartbeat or the watchdog) claims first.
    claim_at: Option<Instant>,
    /// Set by SIGTERM/SIGINT: when the shutdown grace ends.
    shutdown: Option<Instant>,
    notifier: notify::Notifier,
    /// When systemd's watchdog is next fed, when it asked to be.
    next_watchdog: Option<Instant>,
    /// The main connection's prepared statements.
    prepared: store::Prepared,
    /// The server the main connection reached (`host:port`), for the
    /// read-only line (§19).
    db_host: String,
}

impl Loop {
    fn max_parallel(&self) -> usize {
        self.shared.config.runner.max_parallel as usize
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let log = self.shared.log.clone();
        let mut next_heartbeat = Instant::now();
        // Woken by an event (a NOTIFY, a run that ended): try to claim at once.
        let mut woken = true;
        loop {
            // Liveness first: it also recovers the runs of dead runners, and
            // it returns the agenda, so that an idle wake-up costs one round trip.
            let mut agenda = None;
            if Instant::now() >= next_heartbeat {
                match self.heartbeat() {
                    Ok(fresh) => {
                        self.shared.liveness.contact();
                        next_heartbeat = Instant::now() + self.shared.timings().heartbeat;
                        agenda = Some(fresh);
                        self.shared.close_idle_connections();
                    }
                    Err(e) => {
                        if !self.reconnect(e)? {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            let wait = match self.step(self.shutdown.is_some(), agenda, std::mem::take(&mut woken))
            {
                Ok(Some(wait)) => wait,
                Ok(None) => return Ok(()),
                Err(e) => {
                    if !self.reconnect(e)? {
                        return Ok(());
                    }
                    continue;
                }
            };
            self.shared.liveness.contact();
            if self.shutdown.is_some() && self.in_flight == 0 {
                log.info("All jobs finished; the runner stops");
                return Ok(());
            }
            let mut wait = wait.min(next_heartbeat.saturating_duration_since(Instant::now()));
            if let Some(next) = self.feed_watchdog() {
                wait = wait.min(next.saturating_duration_since(Instant::now()));
            }
            if let Some(deadline) = self.shutdown {
                wait = wait.min(deadline.saturating_duration_since(Instant::now()));
                if wait.is_zero() {
                    log.warn(format!(
                        "Shutdown grace expired; killing {} running job(s)",
                        self.in_flight
                    ));
                    self.shared.stop_all_children("Interrupted: the runner was shut down and the job outlived the shutdown grace");
                    self.wait_for_workers(Duration::from_secs(15));
                    recover::interrupt_own_runs(&self.shared, &mut self.client, &mut self.prepared, "Interrupted: the runner was shut down and the job outlived the shutdown grace");
                    return Ok(());
                }
            }
            match self.events.recv_timeout(wait) {
                Ok(event) => {
                    woken = true;
                    self.handle(event);
                }
                Err(RecvTimeoutError::Timeout) => {
                    woken = self.claim_at.is_some_and(|at| Instant::now() >= at);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the runner's event channel closed")
                }
            }
            // Coalesce a burst (many NOTIFYs, many runs ending) into one pass.
            while let Ok(event) = self.events.try_recv() {
                self.handle(event);
            }
        }
    }

    /// Feed systemd's watchdog when it is time; returns when next to feed it.
    /// Only this loop feeds it: a loop that hangs gets the runner restarted.
    fn feed_watchdog(&mut self) -> Option<Instant> {
        let every = self.notifier.watchdog_every?;
        let next = self.next_watchdog.get_or_insert_with(Instant::now);
        if Instant::now() >= *next {
            self.notifier.send("WATCHDOG=1");
            *next = Instant::now() + every;
        }
        self.next_watchdog
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Changed => {}
            Event::Finished(report) => {
                if !report.continued {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                if !report.succeeded {
                    self.all_succeeded = false;
                }
            }
            Event::Signal(signal) => {
                if self.shutdown.is_none() {
                    self.shared
                        .stopping
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    let grace = self.shared.config.runner.shutdown_grace_secs;
                    let name = if signal == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    self.shared.log.info(format!(
                        "Received {name}: starting no more jobs; {} running job(s) get up to {grace} s to finish",
                        self.in_flight
                    ));
                    self.shutdown = Some(Instant::now() + Duration::from_secs(u64::from(grace)));
                    self.notifier.send(&format!(
                        "STOPPING=1\nSTATUS=Stopping: waiting for {} running job(s)",
                        self.in_flight
                    ));
                }
            }
        }
    }

    /// Start what is due; return how long to sleep, or None when `--once` is done.
    ///
    /// `agenda` is a fresh one when the caller has it (from the heartbeat).
    /// When `woken` by an event and a slot is free, the claim comes first: a
    /// trigger then costs one statement before the job starts, and a claim
    /// that finds nothing writes nothing.
    fn step(
        &mut self,
        shutting_down: bool,
        mut agenda: Option<store::Agenda>,
        mut woken: bool,
    ) -> Result<Option<Duration>, postgres::Error> {
        loop {
            let free = self.max_parallel().saturating_sub(self.in_flight);
            if std::mem::take(&mut woken) && free > 0 && !shutting_down {
                let (any, fresh) = self.claim(free)?;
                agenda = fresh;
                if any {
                    woken = true;
                    continue;
                }
            }
            if free == 0 && agenda.is_none() && !self.shared.watching_overlaps() {
                // Every slot is busy, and a worker claims its own next run:
                // nothing this loop could start, so no query either.
                return Ok(Some(self.shared.timings().heartbeat));
            }
            let current = match agenda.take() {
                Some(agenda) => agenda,
                None => store::agenda(
                    &mut self.client,
                    &mut self.prepared,
                    self.shared.runner_id,
                    &self.shared.config.runner.tags,
                )?,
            };
            let measured = Instant::now();
            if current.held && current.held_until.is_some_and(|end| end <= current.db_now) {
                // `jobs hold --until` has reached its end: release it (once,
                // whichever runner is first) and look again.
                if self.release_ended_hold() {
                    continue;
                }
            }
            let due_now = current.due_now();
            // A slot that came while its job runs (§21) needs no worker.
            let overlap_now =
                !current.held && current.next_overlap.is_some_and(|d| d <= current.db_now);
            if overlap_now && !shutting_down && self.overlaps()? {
                continue;
            }
            if due_now && free > 0 && !shutting_down {
                let (any, fresh) = self.claim(free)?;
                let still_due = fresh.as_ref().is_some_and(store::Agenda::due_now);
                agenda = fresh;
                if any {
                    continue;
                }
                // Another runner took them: look again at what is left
                // (the claim's agenda). A job that is still due but was
                // not claimable is locked by someone's transaction right
                // now: look again shortly rather than at once.
                if !still_due || (self.in_flight == 0 && self.options.once) {
                    continue;
                }
                self.claim_at = Some(Instant::now() + LOCKED_RETRY);
                return Ok(Some(LOCKED_RETRY));
            }
            if self.options.once && self.in_flight == 0 && (!due_now || current.held) {
                if current.held {
                    self.shared.log.info("Jobs are held; nothing runs");
                }
                return Ok(None);
            }
            let heartbeat = self.shared.timings().heartbeat;
            self.claim_at = None;
            let wait = if current.held || shutting_down {
                // Only a NOTIFY, a finished run, the heartbeat or the hold's
                // end can change things.
                match current
                    .held_until
                    .filter(|end| current.held && *end > current.db_now)
                {
                    Some(end) => (end - current.db_now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .saturating_sub(measured.elapsed())
                        .clamp(Duration::from_millis(1), heartbeat),
                    // No end, or one that could not be released: as held.
                    None => heartbeat,
                }
            } else {
                // With every worker busy only an overlap slot can be acted on.
                let next_due = if free == 0 { None } else { current.next_due };
                let next = next_due.into_iter().chain(current.next_overlap).min();
                // Woken at a due instant, the loop claims at once: one
                // statement, the claim with its agenda.
                match next {
                    Some(at) => {
                        let until = (at - current.db_now).to_std().unwrap_or(Duration::ZERO);
                        let until = until.saturating_sub(measured.elapsed());
                        if next == next_due {
                            self.claim_at = Some(Instant::now() + until);
                        }
                        until
                    }
                    None => heartbeat,
                }
            };
            self.log_sleep(&current, wait);
            return Ok(Some(wait));
        }
    }

    fn log_sleep(&mut self, agenda: &store::Agenda, wait: Duration) {
        let target = if agenda.held { None } else { agenda.next_due };
        if self.last_sleep_log == Some(target) || wait.is_zero() {
            return;
        }
        self.last_sleep_log = Some(target);
        let log = &self.shared.log;
        let running = if self.in_flight > 0 {
            format!("; running {} job(s)", self.in_flight)
        } else {
            String::new()
        };
        if agenda.held {
            log.info("Jobs are held; waiting for the release");
            self.notifier
                .send(&format!("STATUS=Jobs are held{running}"));
        } else if let Some(next) = agenda.next_due {
            let secs = (next - agenda.db_now).num_milliseconds().max(0) as f64 / 1000.0;
            let when = crate::schedule::human_instant(next, self.shared.config.timezone);
            log.info(format!("Sleeping {secs:.1} s until {when}"));
            self.notifier
                .send(&format!("STATUS=Sleeping until {when}{running}"));
        } else if self.in_flight == 0 {
            log.info("Nothing is scheduled; waiting for a notification");
            self.notifier.send("STATUS=Nothing is scheduled");
        }
    }

    /// End a `hold --until` whose end has passed; whether it was ended here
    /// or by another runner meanwhile (either way: look again). A failure
    /// is logged, and the loop then sleeps as while held.
    fn release_ended_hold(&mut self) -> bool {
        let tz = self.shared.config.timezone;
        match crate::ops::release_ended_hold(&mut self.client, tz, &crate::ops::Actor::runner()) {
            Ok(released) => {
                if released {
                    self.shared
                        .log
                        .info("The hold has reached its end: released, pending jobs rescheduled");
                }
                true
            }
            Err(e) => {
                self.shared
                    .log
                    .warn(format!("could not end the hold: {e:#}"));
                false
            }
        }
    }

    /// Act on the slots that came while their jobs run (§21): a `skip`
    /// job's is skipped (and its slot moved on), a `replace` job's owner is
    /// asked to stop its run (the new run is claimed once that run is
    /// recorded, like any due run). Whether there were any. The lines are
    /// logged once the transaction is committed.
    fn overlaps(&mut self) -> Result<bool, postgres::Error> {
        let tz = self.shared.config.timezone;
        let mut tx = self.client.transaction()?;
        let (jobs, now) = store::overlapping_jobs(
            &mut tx,
            self.shared.runner_id,
            &self.shared.config.runner.tags,
        )?;
        let mut lines = Vec::new();
        for job in &jobs {
            match job.overlap() {
                crate::job::Overlap::Wait => store::clear_overlap_slot(&mut tx, job)?,
                crate::job::Overlap::Skip => {
                    let reason = "still running";
                    let next = job.slot_while_running(now, tz);
                    store::skip_overlap(&mut tx, job, now, reason, next)?;
                    lines.push(
                        Entry::info(format!("Skipping job {}: {reason}", job.name))
                            .job(&job.name)
                            .state("skipped"),
                    );
                }
                crate::job::Overlap::Replace => {
                    store::request_replace(&mut tx, job)?;
                    let run = job.running_run.unwrap_or_default();
                    lines.push(
                        Entry::info(format!(
                            "Replacing job {}: a new slot came while run {run} was running",
                            job.name
                        ))
                        .job(&job.name)
                        .run_id(run),
                    );
                }
            }
        }
        tx.commit()?;
        for line in lines {
            self.shared.log.event(line);
        }
        Ok(!jobs.is_empty())
    }

    /// Claim up to `free` due jobs and hand them to the workers: whether any
    /// were, and the agenda after the claim (from the same statement).
    fn claim(&mut self, free: usize) -> Result<(bool, Option<store::Agenda>), postgres::Error> {
        let (claimed, agenda) = store::claim_due_with_agenda(
            &mut self.client,
            &mut self.prepared,
            &self.shared.claimant(),
            free as i64,
        )?;
        if claimed.is_empty() {
            return Ok((false, agenda));
        }
        self.dispatch(claimed);
        Ok((true, agenda))
    }

    fn dispatch(&mut self, claimed: Vec<store::Claimed>) {
        for run in claimed {
            self.in_flight += 1;
            self.shared.run_opened(run.run_id);
            self.pool.dispatch(run);
        }
        self.notifier
            .send(&format!("STATUS=Running {} job(s)", self.in_flight));
    }

    /// One statement: the heartbeat, the agenda, and whether any dead
    /// runner left a run behind (recovered only then).
    fn heartbeat(&mut self) -> Result<store::Agenda, postgres::Error> {
        let store::Heartbeat {
            agenda,
            orphans,
            dead_man_due,
        } = store::heartbeat(
            &mut self.client,
            &mut self.prepared,
            self.shared.runner_id,
            self.shared.timings().dead_after,
            &self.shared.config.runner.tags,
        )?;
        // A replace request whose NOTIFY was lost (the LISTEN connection
        // was away) is honoured here, within a heartbeat.
        if self.shared.watching_overlaps() {
            let watched = self.shared.watched_overlap_runs();
            for run_id in store::replace_requests(&mut self.client, &watched)? {
                self.shared.replace_run(run_id);
            }
        }
        // Checked on the heartbeat's tick, so an idle runner wakes no more
        // often for it (§20: within 60 s of the moment).
        if dead_man_due {
            alerts::dead_man(&self.shared, &mut self.client)?;
        }
        if orphans {
            recover::recover_orphans(&self.shared, &mut self.client, &mut self.prepared)?;
            return store::agenda(
                &mut self.client,
                &mut self.prepared,
                self.shared.runner_id,
                &self.shared.config.runner.tags,
            );
        }
        Ok(agenda)
    }

    /// The main connection failed: reconnect with backoff, re-take the lock,
    /// and carry on. Meanwhile the guard (`guard.rs`) kills the children
    /// `cut_off` after the last contact with the database (not after noticing
    /// the loss: other runners count from our last heartbeat), before anyone
    /// may declare this runner dead (`dead_after`; `Timings::check` keeps the
    /// two apart).
    fn reconnect(&mut self, error: postgres::Error) -> anyhow::Result<bool> {
        let log = self.shared.log.clone();
        // Lost already: nothing for the guard to close until the next one.
        self.shared.set_main_socket(None);
        if crate::db::is_read_only(&error) {
            // The server turned read-only under us (a demoted primary, a
            // standby): as lost as a closed connection, never a raw error.
            log.error(crate::db::Standby::runner_line(&self.db_host));
        } else {
            log.error(format!(
                "Lost the database connection: {}",
                crate::db::describe_error(&error)
            ));
        }
        let timings = *self.shared.timings();
        let mut attempt = 0;
        loop {
            // Told to stop while the database is away: kill what is left once
            // the grace is over (it cannot be recorded now) and go.
            if let Some(deadline) = self.shutdown {
                if self.in_flight == 0 || Instant::now() >= deadline {
                    self.shared.stop_all_children(
                        "Interrupted: the runner was shut down while its database was unreachable",
                    );
                    log.warn("Stopping without the database");
                    return Ok(false);
                }
            }
            self.feed_watchdog();
            self.notifier.send("STATUS=Reconnecting to the database");
            let rejoined =
                self.shared
                    .target
                    .connect_at(APPLICATION_NAME)
                    .and_then(|(mut client, host)| {
                        store::rejoin(
                            &mut client,
                            self.shared.runner_id,
                            &self.shared.host,
                            std::process::id() as i32,
                            &self.shared.config.runner.tags,
                            &self.shared.defined,
                        )
                        .map_err(|e| {
                            if crate::db::is_read_only(&e) {
                                anyhow::Error::new(crate::db::Standby { host: host.clone() })
                            } else {
                                anyhow::anyhow!("{}", crate::db::describe_error(&e))
                            }
                        })?;
                        Ok((client, host))
                    });
            match rejoined {
                Ok((client, host)) => {
                    self.client = client;
                    self.db_host = host;
                    self.shared.set_main_socket(SocketHandle::last_connected());
                    // Prepared statements belong to the old connection.
                    self.prepared = store::Prepared::default();
                    self.shared.liveness.contact();
                    self.last_sleep_log = None;
                    log.info("Reconnected to the database");
                    recover::interrupt_lost_claims(
                        &self.shared,
                        &mut self.client,
                        &mut self.prepared,
                    );
                    return Ok(true);
                }
                Err(e) => {
                    let mut wait = timings.backoff(attempt).min(RECONNECT_WAIT_MAX);
                    attempt += 1;
                    match e.downcast_ref::<crate::db::Standby>() {
                        Some(standby) => log.error(crate::db::Standby::runner_line(&standby.host)),
                        None => {
                            log.error(format!("{e:#}; retrying in {:.1} s", wait.as_secs_f64()))
                        }
                    }
                    if let Some(deadline) = self.shutdown {
                        wait = wait.min(deadline.saturating_duration_since(Instant::now()));
                    }
                    if let Some(every) = self.notifier.watchdog_every {
                        wait = wait.min(every);
                    }
                    // Keep counting finished runs while we wait.
                    let deadline = Instant::now() + wait;
                    while let Ok(event) = self
                        .events
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        self.handle(event);
                    }
                }
            }
        }
    }

    fn wait_for_workers(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.in_flight > 0 {
            match self
                .events
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Event::Finished(report)) => {
                    if !report.continued {
                        self.in_flight = self.in_flight.saturating_sub(1);
                    }
                    if !report.succeeded {
                        self.all_succeeded = false;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}
