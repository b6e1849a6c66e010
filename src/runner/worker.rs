//! The workers: each takes a claimed run, does the first phase (should_run),
//! runs the job in-process or as a child, and records the result in one
//! transaction on its own connection (opened lazily, reopened when lost).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use super::record::Record;
use super::{alerts, Entry, Event, Shared, APPLICATION_NAME};
use crate::job::definition::{Builtin, JobArgs, JobContext, JobDef, JobKind, ShouldRun};
use crate::job::{AfterRun, Ended, Finished, Overlap, Retry, RunState};
use crate::process::{self, ChildSpec, Ending, RunMark, StopHandle};
use crate::schedule;
use crate::store::{self, Claimed, SqlFailure};

/// What a worker tells the loop when a claimed run is over.
pub struct Report {
    /// Succeeded or skipped.
    pub succeeded: bool,
    /// The worker claimed its next run in the same transaction and goes on
    /// with it: the slot stays taken.
    pub continued: bool,
}

pub struct Pool {
    work: Sender<Claimed>,
}

impl Pool {
    pub fn start(shared: Arc<Shared>, events: Sender<Event>) -> Pool {
        let (work, queue) = std::sync::mpsc::channel::<Claimed>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..shared.config.runner.max_parallel {
            let shared = Arc::clone(&shared);
            let queue = Arc::clone(&queue);
            let events = events.clone();
            let log = shared.log.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker_loop(&shared, &queue, &events));
            if let Err(e) = spawned {
                // Fewer workers only means less parallelism; the loop never
                // dispatches more than max_parallel, and the rest queue.
                log.warn(format!("warning: could not start worker {i}: {e}"));
            }
        }
        Pool { work }
    }

    pub fn dispatch(&self, claimed: Claimed) {
        let _ = self.work.send(claimed);
    }
}

/// Take a claimed run, do it (and the runs claimed while recording it), and
/// give the connection back to the runner's idle ones in between, where it
/// is closed if no run needs it for a while.
fn worker_loop(shared: &Shared, queue: &Mutex<Receiver<Claimed>>, events: &Sender<Event>) {
    loop {
        let claimed = match queue.lock() {
            Ok(receiver) => match receiver.recv() {
                Ok(claimed) => claimed,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let mut client: Option<Conn> = shared.take_connection();
        let mut current = Some(claimed);
        while let Some(claimed) = current.take() {
            let run_id = claimed.run_id;
            shared.run_opened(run_id);
            let (succeeded, next) = execute(shared, &mut client, claimed);
            // The next run was claimed in the same transaction: open before
            // this one closes, so that no moment finds it nobody's.
            if let Some(next) = &next {
                shared.run_opened(next.run_id);
            }
            shared.run_closed(run_id);
            let continued = next.is_some();
            if events
                .send(Event::Finished(Report {
                    succeeded,
                    continued,
                }))
                .is_err()
            {
                return;
            }
            current = next;
        }
        if let Some(conn) = client.filter(|c| !c.client.is_closed()) {
            shared.put_back_connection(conn);
        }
    }
}

/// A worker's connection and the statements prepared on it.
pub struct Conn {
    client: postgres::Client,
    prepared: store::Prepared,
    /// The server it reached, for the read-only line (§19).
    host: String,
}

/// The worker's connection, (re)opened when needed.
fn connection<'a>(shared: &Shared, slot: &'a mut Option<Conn>) -> anyhow::Result<&'a mut Conn> {
    if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
        let (client, host) = shared.target.connect_at(APPLICATION_NAME)?;
        *slot = Some(Conn {
            client,
            prepared: store::Prepared::default(),
            host,
        });
    }
    slot.as_mut()
        .ok_or_else(|| anyhow::anyhow!("no connection"))
}

/// The result of the first phase.
enum Check {
    Run,
    /// Nothing to do, and why.
    Skip(String),
    /// The check itself failed: run anyway, with this heading the output.
    Failed(String),
}

fn should_run(shared: &Shared, slot: &mut Option<Conn>, def: &JobDef, run_id: i64) -> Check {
    let result: anyhow::Result<ShouldRun> = (|| match &def.kind {
        JobKind::Builtin(builtin) => match builtin.should_run {
            None => Ok(ShouldRun::Run),
            Some(check) => {
                let client = &mut connection(shared, slot)?.client;
                let mut sink = std::io::sink();
                let mut ctx = JobContext {
                    client,
                    run_id: Some(run_id),
                    args: &[],
                    out: &mut sink,
                    config: &shared.config,
                    options: &JobArgs::default(),
                };
                match std::panic::catch_unwind(AssertUnwindSafe(|| check(&mut ctx))) {
                    Ok(result) => result,
                    Err(panic) => Err(anyhow::anyhow!("panic: {}", panic_message(&panic))),
                }
            }
        },
        JobKind::Declared(declared) => match &declared.settings.should_run {
            None => Ok(ShouldRun::Run),
            Some(sql) => {
                let client = &mut connection(shared, slot)?.client;
                let rows = client
                    .query(sql.as_str(), &[])
                    .map_err(|e| anyhow::anyhow!("{}", crate::db::describe_error(&e)))?;
                let skip = |what: &str| Ok(ShouldRun::Skip(format!("should_run returned {what}")));
                match rows.first() {
                    None => skip("no row"),
                    Some(row) => match row.try_get::<_, Option<bool>>(0) {
                        Ok(Some(true)) => Ok(ShouldRun::Run),
                        Ok(Some(false)) => skip("false"),
                        Ok(None) => skip("NULL"),
                        Err(e) => Err(anyhow::anyhow!("the first column is not a boolean: {e}")),
                    },
                }
            }
        },
    })();
    match result {
        Ok(ShouldRun::Run) => Check::Run,
        Ok(ShouldRun::Skip(reason)) => Check::Skip(reason),
        Err(e) => Check::Failed(format!("{e:#}")),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Do one claimed run from check to record: whether it succeeded (or was
/// skipped), and the next run this worker claimed while recording, if any.
fn execute(shared: &Shared, slot: &mut Option<Conn>, claimed: Claimed) -> (bool, Option<Claimed>) {
    let log = &shared.log;
    let name = claimed.job.name.clone();
    let started = Instant::now();
    let Some(def) = shared.registry.get(&name) else {
        // The claim takes only the jobs this runner defines, so this is a
        // bug, not a deploy: the job is given back as it was — not run, not
        // failed, never disabled — for a runner that defines it (§17).
        log.event(
            Entry::warn(format!(
                "Job {name} is not defined in this runner's configuration; it is left for a runner that defines it"
            ))
            .job(&name)
            .run_id(claimed.run_id),
        );
        retry(shared, slot, "giving back the claim", |conn| {
            store::release_claim(&mut conn.client, claimed.run_id, &name)
        });
        return (true, None);
    };

    // Before the first phase: a run past its start deadline is not run late
    // (§11), whatever should_run would say. The claim's start is the
    // database's clock, as the due time is.
    if let Some(late) = claimed.job.missed_start_deadline(claimed.started_at) {
        let reason = format!(
            "missed its start deadline by {}",
            schedule::format_duration(late)
        );
        log.event(
            Entry::info(format!("Skipping job {name}: {reason}"))
                .job(&name)
                .run_id(claimed.run_id)
                .state("skipped"),
        );
        let next = skip_with_retry(shared, slot, &claimed, started.elapsed(), &reason);
        return (true, next);
    }
    // With skip or replace (§21), the slot this run would meet is written
    // with it, for every runner to watch; best effort, as the group is: a
    // slot not written only makes the run wait, as it always did.
    let watched = watch_overlap(shared, slot, &claimed);
    let heading = match should_run(shared, slot, def, claimed.run_id) {
        Check::Skip(reason) => {
            log.event(
                Entry::info(format!("Skipping job {name}: {reason}"))
                    .job(&name)
                    .run_id(claimed.run_id)
                    .state("skipped"),
            );
            let next = skip_with_retry(shared, slot, &claimed, started.elapsed(), &reason);
            shared.unwatch_overlap(watched);
            return (true, next);
        }
        Check::Run => String::new(),
        Check::Failed(error) => format!("should_run failed: {error}\n\n"),
    };
    log.event(
        Entry::info(format!("Running job {name}"))
            .job(&name)
            .run_id(claimed.run_id)
            .state(RunState::Running.as_str()),
    );
    let ended = match &def.kind {
        JobKind::Builtin(builtin) if builtin.internal => {
            run_internal(shared, slot, builtin, &claimed, &heading)
        }
        _ => match def.sql() {
            Some(sql) => run_sql(shared, &claimed, def, sql, &heading),
            None => run_child(shared, slot, &claimed, def, &heading),
        },
    };
    let runtime = started.elapsed();
    // To the millisecond, as the JSON log writes it, so that the line's one
    // decimal is the rounding of the JSON's duration_seconds.
    let secs = (runtime.as_secs_f64() * 1000.0).round() / 1000.0;
    let succeeded = ended.finished == Finished::Succeeded;
    let state = ended.state();
    let finished_entry = |entry: Entry| {
        entry
            .job(&name)
            .run_id(claimed.run_id)
            .state(state.as_str())
            .duration(secs)
    };
    let disabled = ended.disable.then(|| ended.output.trim_end().to_string());
    let failed = !succeeded && !ended.disable;
    let run_id = claimed.run_id;
    let recorded = record_with_retry(shared, slot, &claimed, Some(def), runtime, ended);
    shared.unwatch_overlap(watched);
    // What is logged is what was recorded (§18): the outcome lines come
    // once the run is written; a failure's says whether, and when, it is
    // retried (§13).
    if let Some(why) = disabled {
        log.event(finished_entry(Entry::error(format!(
            "Job {name} could not be started and has been disabled: {why}"
        ))));
    } else if succeeded {
        log.event(finished_entry(Entry::info(format!(
            "Job {name} succeeded in {secs:.1} s"
        ))));
    }
    if failed {
        log.event(
            Entry::warn(failure_line(shared, &name, secs, state, recorded.retry))
                .job(&name)
                .run_id(run_id)
                .state(state.as_str())
                .duration(secs),
        );
    }
    (succeeded, recorded.next)
}

/// Write the slot a skip/replace run meets while it lasts (§21) and note
/// the run as one this runner watches; the run's id when it is.
fn watch_overlap(shared: &Shared, slot: &mut Option<Conn>, claimed: &Claimed) -> Option<i64> {
    let at = claimed
        .job
        .slot_while_running(claimed.started_at, shared.config.timezone)?;
    let conn = connection(shared, slot).ok()?;
    store::set_overlap_slot(&mut conn.client, &claimed.job.name, claimed.run_id, at).ok()?;
    shared.watch_overlap(claimed.run_id);
    Some(claimed.run_id)
}

/// The output of an internal job, shared with the thread that may send its
/// slow-run warning meanwhile (§20).
struct SharedSink<'a>(&'a std::sync::Mutex<Vec<u8>>);

impl std::io::Write for SharedSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut sink) => sink.write(bytes),
            Err(_) => Err(std::io::Error::other("the output sink is poisoned")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run_internal(
    shared: &Shared,
    slot: &mut Option<Conn>,
    builtin: &Builtin,
    claimed: &Claimed,
    heading: &str,
) -> Ended {
    let max = shared.config.max_output_bytes as usize;
    let shared_sink = std::sync::Mutex::new(Vec::new());
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let result: anyhow::Result<()> = std::thread::scope(|scope| {
        // The job runs on this thread and its connection: its warning comes
        // from a watcher with a connection of its own.
        if let Some(after) = claimed.job.warn_after_seconds() {
            let sink = &shared_sink;
            scope.spawn(move || {
                let waited = watch.recv_timeout(Duration::from_secs(u64::from(after)));
                if waited != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
                let so_far = sink.lock().map(|s| s.clone()).unwrap_or_default();
                let mut own = shared.take_connection();
                warn_slow(shared, &mut own, claimed, after, &so_far);
                if let Some(conn) = own {
                    shared.put_back_connection(conn);
                }
            });
        }
        let result = match connection(shared, slot) {
            Err(e) => Err(e),
            Ok(conn) => {
                let mut out = SharedSink(&shared_sink);
                let mut ctx = JobContext {
                    client: &mut conn.client,
                    run_id: Some(claimed.run_id),
                    args: &claimed.args,
                    out: &mut out,
                    config: &shared.config,
                    options: &JobArgs::default(),
                };
                match std::panic::catch_unwind(AssertUnwindSafe(|| (builtin.run)(&mut ctx))) {
                    Ok(result) => result,
                    Err(panic) => Err(anyhow::anyhow!(
                        "the job panicked: {}",
                        panic_message(&panic)
                    )),
                }
            }
        };
        drop(done);
        result
    });
    let mut sink = shared_sink.into_inner().unwrap_or_default();
    let dropped = sink.len().saturating_sub(max) as u64;
    sink.truncate(max);
    let mut output = format!("{heading}{}", output_text(&sink, dropped));
    match result {
        Ok(()) => Ended::new(Finished::Succeeded, output),
        Err(e) => {
            if !output.is_empty() && !output.ends_with('\n') {
                output.push('\n');
            }
            output.push_str(&format!("error: {e:#}\n"));
            Ended::new(Finished::Failed, output)
        }
    }
}

/// An SQL job (§12): on a connection of its own, named `manage job NAME`,
/// whose notices are the output; one transaction, `statement_timeout` = the
/// job's timeout. Nothing of a failed run is committed. A connection of its
/// own rather than the worker's: the application name and the notice sink
/// are the run's from the first byte, and a runner that dies takes the
/// transaction with it (the server rolls it back with the connection). At
/// shutdown or cut-off the statement is cancelled, as a child would be killed.
fn run_sql(shared: &Shared, claimed: &Claimed, def: &JobDef, sql: &str, heading: &str) -> Ended {
    let stop = StopHandle::default();
    if let Ok(mut children) = shared.children.lock() {
        children.insert(claimed.run_id, stop.clone());
    }
    // Registered first, checked second, as for a child (`run_child`).
    let (ending, kept) = if shared.liveness.is_cut_off() {
        (SqlEnding::NotStarted, None)
    } else {
        run_sql_transaction(shared, def, sql, &stop)
    };
    if let Ok(mut children) = shared.children.lock() {
        children.remove(&claimed.run_id);
    }
    // Back to the pool only now: no stop can reach this run any more, so no
    // cancel meant for it can land on the next run of that connection.
    if let Some(conn) = kept.filter(|_| !stop.stopped()) {
        shared.put_back_sql_connection(conn);
    }
    let (notices, ending, closed) = match ending {
        SqlEnding::NotStarted => {
            return Ended::new(
                Finished::Interrupted,
                format!("{heading}Interrupted: the runner was cut off from its database and did not start the job"),
            )
        }
        SqlEnding::NoConnection(why) => {
            return Ended::new(Finished::Failed, format!("{heading}ERROR: {why}"))
        }
        SqlEnding::Ran(ran) => (ran.notices, ran.ending, ran.closed),
    };
    let mut text = String::new();
    for line in &notices {
        text.push_str(line);
        text.push('\n');
    }
    let max = shared.config.max_output_bytes as usize;
    let dropped = text.len().saturating_sub(max) as u64;
    let mut cut = text.into_bytes();
    cut.truncate(max);
    let text = output_text(&cut, dropped);
    let closed_line = if closed {
        format!("The statement had not ended {CLOSE_AFTER_CANCEL:?} after its cancel; its connection was closed.\n")
    } else {
        String::new()
    };
    let interrupted = || {
        Ended::new(
            Finished::Interrupted,
            format!(
                "{heading}{}{closed_line}{}",
                with_newline(&text),
                stop.reason()
                    .unwrap_or_else(|| "Interrupted: the runner stopped the job".into())
            ),
        )
    };
    let timed_out = || {
        Ended::new(
            Finished::TimedOut,
            format!(
                "{heading}{}{closed_line}Timeout of {} seconds expired.",
                with_newline(&text),
                def.timeout_secs.max(1)
            ),
        )
    };
    match ending {
        Ok(()) => Ended::new(Finished::Succeeded, format!("{heading}{text}")),
        // Stopped (shutdown, cut-off): whatever the error its cancel caused.
        Err(_) if stop.stopped() => interrupted(),
        // The runner's own timeout (§18), or the server's statement_timeout.
        Err(SqlFailure::Expired(_)) => timed_out(),
        Err(_) if closed => timed_out(),
        Err(SqlFailure::Db(e)) if crate::db::is_query_canceled(&e) => timed_out(),
        Err(SqlFailure::Db(e)) => Ended::new(
            Finished::Failed,
            format!(
                "{heading}{}{}",
                with_newline(&text),
                crate::db::error_lines(&e)
            ),
        ),
    }
}

/// How long a cancelled statement (at the timeout, or a stop) has to end
/// before the runner closes its connection and records the run (§18).
pub const CLOSE_AFTER_CANCEL: Duration = Duration::from_secs(5);

enum SqlEnding {
    /// Cut off from the database: not started.
    NotStarted,
    /// No connection for the job: a failure that says why.
    NoConnection(String),
    Ran(SqlRan),
}

/// A run that was sent to the database.
struct SqlRan {
    notices: Vec<String>,
    /// How it ended; when its timeout expired, the error says how (an
    /// `Expired`, a cancelled statement, or a closed connection).
    ending: Result<(), SqlFailure>,
    /// The statement outlived its cancel by `CLOSE_AFTER_CANCEL`, and its
    /// connection was closed (from the server's side) and given up.
    closed: bool,
}

/// A connection for SQL jobs, kept between runs (a connection per run cost
/// a backend's start-up, 2–6 ms, for a `SELECT 1` of 0.1 ms): the notices
/// of the run in progress go to `notices`. Closed with the worker
/// connections once unused for `idle_close`.
pub struct SqlConn {
    client: postgres::Client,
    notices: Arc<Mutex<Vec<String>>>,
    canceller: Option<Arc<crate::db::Canceller>>,
    /// Its backend, to terminate when a cancel is not enough.
    backend_pid: Option<i32>,
}

impl SqlConn {
    fn open(shared: &Shared) -> anyhow::Result<SqlConn> {
        let notices: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&notices);
        let on_notice: crate::db::NoticeSink = Arc::new(move |line: String| {
            if let Ok(mut lines) = sink.lock() {
                lines.push(line);
            }
        });
        let mut client = shared
            .target
            .connect_with_notices(APPLICATION_NAME, on_notice)?;
        let canceller = crate::db::Canceller::new(&shared.target, &client)
            .ok()
            .map(Arc::new);
        let backend_pid = store::backend_pid(&mut client).ok();
        Ok(SqlConn {
            client,
            notices,
            canceller,
            backend_pid,
        })
    }

    /// Ask the server to cancel the statement in flight, on a thread of its
    /// own: a cancel opens a connection, and whoever stops a run (the
    /// guard, when the database is gone) must never wait on it.
    fn cancel_later(canceller: &Option<Arc<crate::db::Canceller>>) {
        if let Some(canceller) = canceller {
            let canceller = Arc::clone(canceller);
            let _ = std::thread::Builder::new()
                .name("cancel".into())
                .spawn(move || canceller.cancel());
        }
    }
}

/// The run's ending, and its connection when it can serve the next run.
///
/// The statements run on a thread of their own while this one keeps the
/// time: the job's timeout is the runner's (§18), whatever the job sets.
/// At the timeout the statement is cancelled (the protocol's cancel
/// request); if it has not ended `CLOSE_AFTER_CANCEL` later — a cancel lost
/// on the way, a backend that does not look at it — its backend is
/// terminated, the connection given up to its thread, and the run recorded
/// `timed_out` without waiting any longer. A stop (shutdown, cut-off) is
/// given the same 5 s.
fn run_sql_transaction(
    shared: &Shared,
    def: &JobDef,
    sql: &str,
    stop: &StopHandle,
) -> (SqlEnding, Option<SqlConn>) {
    let conn = match shared.take_sql_connection() {
        Some(conn) => conn,
        None => match SqlConn::open(shared) {
            Ok(conn) => conn,
            Err(e) => return (SqlEnding::NoConnection(format!("{e:#}")), None),
        },
    };
    if let Ok(mut lines) = conn.notices.lock() {
        lines.clear();
    }
    let canceller = conn.canceller.clone();
    {
        let canceller = canceller.clone();
        stop.on_stop(move || SqlConn::cancel_later(&canceller));
    }
    let backend_pid = conn.backend_pid;
    let notices_so_far = Arc::clone(&conn.notices);
    let expired = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let job = {
        let expired = Arc::clone(&expired);
        let sql = sql.to_string();
        let name = def.name.clone();
        let timeout_secs = def.timeout_secs;
        let autocommit = def.sql_autocommit();
        move || {
            let mut conn = conn;
            let ending = store::run_sql(
                &mut conn.client,
                &store::SqlRun {
                    sql: &sql,
                    timeout_secs: Some(timeout_secs),
                    application_name: Some(&format!("manage job {name}")),
                    autocommit,
                    expired: &expired,
                },
            );
            let notices = conn
                .notices
                .lock()
                .map(|mut l| std::mem::take(&mut *l))
                .unwrap_or_default();
            // Kept for the next run only as it came: the session's settings,
            // temp tables, prepared statements, LISTENs and advisory locks of
            // this run gone (DISCARD ALL), and never once a cancel may have
            // been sent that could land on the next run (the caller checks
            // again once the run can no longer be stopped).
            let keep = !expired.load(Ordering::SeqCst)
                && !conn.client.is_closed()
                && conn.client.batch_execute("DISCARD ALL").is_ok();
            let _ = done_tx.send((ending, notices, keep.then_some(conn)));
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("sql job".into())
        .spawn(job)
    {
        return (
            SqlEnding::NoConnection(format!("cannot start the job's thread: {e}")),
            None,
        );
    }
    let timeout = Duration::from_secs(u64::from(def.timeout_secs.max(1)));
    let deadline = Instant::now() + timeout;
    let mut cancelled_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = match cancelled_at {
            Some(at) => at + CLOSE_AFTER_CANCEL,
            None => deadline,
        };
        // Short slices: a stop is seen within one.
        let slice = wake
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        match done_rx.recv_timeout(slice) {
            Ok((ending, notices, kept)) => {
                let kept = kept.filter(|_| cancelled_at.is_none());
                let ran = SqlRan {
                    notices,
                    ending,
                    closed: false,
                };
                return (SqlEnding::Ran(ran), kept);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let ran = SqlRan {
                    notices: Vec::new(),
                    ending: Err(store::Expired.into()),
                    closed: true,
                };
                return (SqlEnding::Ran(ran), None);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        if cancelled_at.is_none() && (now >= deadline || stop.stopped()) {
            if now >= deadline {
                expired.store(true, Ordering::SeqCst);
                SqlConn::cancel_later(&canceller);
            }
            cancelled_at = Some(now);
        } else if cancelled_at.is_some_and(|at| now >= at + CLOSE_AFTER_CANCEL) {
            expired.store(true, Ordering::SeqCst);
            terminate_later(shared, backend_pid);
            shared.log.event(
                Entry::warn(format!(
                    "Job {}: the statement had not ended {CLOSE_AFTER_CANCEL:?} after its cancel; closing its connection",
                    def.name
                ))
                .job(&def.name),
            );
            // The connection stays with its thread until the server has
            // closed it; what the run wrote so far is the output.
            let ran = SqlRan {
                notices: notices_so_far
                    .lock()
                    .map(|mut l| std::mem::take(&mut *l))
                    .unwrap_or_default(),
                ending: Err(store::Expired.into()),
                closed: true,
            };
            return (SqlEnding::Ran(ran), None);
        }
    }
}

/// Close an SQL job's connection from the server's side (its backend
/// terminated over a connection of its own), on a thread of its own.
fn terminate_later(shared: &Shared, backend_pid: Option<i32>) {
    let Some(pid) = backend_pid else { return };
    let target = shared.target.clone();
    let _ = std::thread::Builder::new()
        .name("terminate".into())
        .spawn(move || {
            if let Ok(mut client) = target.connect(APPLICATION_NAME) {
                let _ = store::terminate_backend(&mut client, pid);
            }
        });
}

/// Captured bytes as stored text: invalid UTF-8 replaced, NUL bytes removed,
/// and a line saying how much was cut.
pub fn output_text(bytes: &[u8], dropped: u64) -> String {
    let mut text = String::from_utf8_lossy(bytes).replace('\0', "");
    if dropped > 0 {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[output truncated: {dropped} bytes not stored]\n"));
    }
    text
}

fn child_spec(shared: &Shared, def: &JobDef, claimed: &Claimed) -> ChildSpec {
    let timeout = Duration::from_secs(u64::from(def.timeout_secs.max(1)));
    let max_output = shared.config.max_output_bytes as usize;
    // Every process of the run carries its mark (§18), so that none
    // outlives it, wherever it went.
    let mark = claimed.token.clone().map(|token| RunMark {
        run_id: claimed.run_id,
        token,
    });
    match &def.kind {
        JobKind::Declared(declared) => ChildSpec {
            program: "sh".into(),
            // SQL jobs never get here (`execute` runs them with `run_sql`).
            // The run's arguments are "$@" (§21): real argv after `sh` as
            // $0, never spliced into the command's text.
            args: [
                "-c".to_string(),
                declared.command().unwrap_or_default().to_string(),
                "sh".to_string(),
            ]
            .into_iter()
            .chain(claimed.args.iter().cloned())
            .collect(),
            env: declared
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            env_remove: Vec::new(),
            working_dir: Some(declared.working_dir.clone()),
            timeout,
            max_output,
            mark,
        },
        JobKind::Builtin(builtin) => {
            // The child gets the runner's database and configuration
            // explicitly, so that it prints only what the job writes.
            let mut env = vec![
                ("DATABASE_URL".to_string(), shared.target.url_for_children()),
                (
                    "MANAGE_TIMEZONE".to_string(),
                    shared.config.timezone.name().to_string(),
                ),
            ];
            let mut env_remove = vec![
                "JOURNAL_STREAM".to_string(),
                "NOTIFY_SOCKET".to_string(),
                "WATCHDOG_USEC".to_string(),
            ];
            match &shared.config.file {
                Some(file) => env.push(("MANAGE_CONFIG".into(), file.display().to_string())),
                None => env_remove.push("MANAGE_CONFIG".into()),
            }
            ChildSpec {
                program: std::env::current_exe().unwrap_or_else(|_| "manage".into()),
                args: std::iter::once(builtin.name.to_string())
                    .chain(claimed.args.iter().cloned())
                    .collect(),
                env,
                env_remove,
                working_dir: shared.config.base_dir().map(|d| d.to_path_buf()),
                timeout,
                max_output,
                mark,
            }
        }
    }
}

fn run_child(
    shared: &Shared,
    slot: &mut Option<Conn>,
    claimed: &Claimed,
    def: &JobDef,
    heading: &str,
) -> Ended {
    let spec = child_spec(shared, def, claimed);
    let stop = StopHandle::default();
    if let Ok(mut children) = shared.children.lock() {
        children.insert(claimed.run_id, stop.clone());
    }
    // Registered first, checked second: the guard either sees this child to
    // stop it, or this worker sees the cut-off and starts nothing.
    if shared.liveness.is_cut_off() {
        if let Ok(mut children) = shared.children.lock() {
            children.remove(&claimed.run_id);
        }
        return Ended::new(
            Finished::Interrupted,
            format!("{heading}Interrupted: the runner was cut off from its database and did not start the job"),
        );
    }
    // The group is recorded with the run as soon as the child exists, with
    // what proves it is the run's: if this runner dies, another one on this
    // machine kills what is left of it, and nobody else's group.
    let run_id = claimed.run_id;
    // Both calls below use the worker's connection while the child runs.
    let slot = std::cell::RefCell::new(slot);
    let warn_after = claimed.job.warn_after_seconds();
    let mut warn = |so_far: &[u8]| {
        if let Some(after) = warn_after {
            warn_slow(shared, &mut slot.borrow_mut(), claimed, after, so_far);
        }
    };
    let slow = warn_after.map(|after| process::SlowWarning {
        after: Duration::from_secs(u64::from(after)),
        warn: &mut warn,
    });
    let result = process::run_child_watched(
        &spec,
        &stop,
        |group| {
            if let Ok(conn) = connection(shared, &mut slot.borrow_mut()) {
                let _ = store::set_run_group(&mut conn.client, run_id, group);
            }
        },
        slow,
    );
    if let Ok(mut children) = shared.children.lock() {
        children.remove(&claimed.run_id);
    }
    match result {
        Err(e) => Ended::cannot_start(format!(
            "{heading}Internal error: cannot start {}: {e}. Job has been disabled",
            spec.program.display()
        )),
        Ok(finished) => {
            let text = output_text(&finished.output, finished.dropped);
            let (state, output) = match finished.ending {
                Ending::Exited(0) => (Finished::Succeeded, format!("{heading}{text}")),
                Ending::Exited(code) => (
                    Finished::Failed,
                    format!("{heading}Exit code {code}\n{text}"),
                ),
                Ending::Signalled(signal) => (
                    Finished::Failed,
                    format!("{heading}Killed by signal {signal}\n{text}"),
                ),
                Ending::TimedOut => (
                    Finished::TimedOut,
                    format!(
                        "{heading}{}Timeout of {} seconds expired.",
                        with_newline(&text),
                        spec.timeout.as_secs()
                    ),
                ),
                Ending::Stopped => (
                    Finished::Interrupted,
                    format!(
                        "{heading}{}{}",
                        with_newline(&text),
                        stop.reason()
                            .unwrap_or_else(|| "Interrupted: the runner stopped the job".into())
                    ),
                ),
            };
            Ended::new(state, output)
        }
    }
}

/// Send the slow-run warning (§20) of `claimed`, still going after `after`
/// seconds with `so_far` written, on the connection in `slot`; a failure is
/// logged, and the run goes on either way.
fn warn_slow(
    shared: &Shared,
    slot: &mut Option<Conn>,
    claimed: &Claimed,
    after: u32,
    so_far: &[u8],
) {
    let output = output_text(so_far, 0);
    let sent = connection(shared, slot).and_then(|conn| {
        alerts::slow(
            shared,
            &mut conn.client,
            &claimed.job,
            claimed.run_id,
            claimed.started_at,
            after,
            &output,
        )
        .map_err(anyhow::Error::from)
    });
    if let Err(e) = sent {
        shared.log.event(
            Entry::warn(format!(
                "Could not queue the slow-run warning of job {}: {e:#}",
                claimed.job.name
            ))
            .job(&claimed.job.name)
            .run_id(claimed.run_id),
        );
    }
}

fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// Write the result; while the database is away, keep it and retry with
/// backoff (the run's result must not be lost).
fn record_with_retry(
    shared: &Shared,
    slot: &mut Option<Conn>,
    claimed: &Claimed,
    def: Option<&JobDef>,
    runtime: Duration,
    ended: Ended,
) -> Recorded {
    let finished_at = claimed.started_at
        + chrono::Duration::from_std(runtime).unwrap_or_else(|_| chrono::Duration::zero());
    let trigger_next: Vec<String> = def.map(|d| d.trigger_next.clone()).unwrap_or_default();
    let result = Record {
        run_id: claimed.run_id,
        job: &claimed.job.name,
        description: &claimed.job.description,
        state: ended.state(),
        started_at: claimed.started_at,
        finished_at,
        runtime_seconds: runtime.as_secs_f64(),
        output: &ended.output,
        disable: ended.disable,
        outcome: ended.outcome(),
        trigger_next: &trigger_next,
        claimed_job: Some(&claimed.job),
    };
    // While the database is away the result waits here; say so once, and
    // say what happened only when it is written (§18).
    let waiting = || {
        shared.log.event(
            Entry::warn(format!(
                "Job {} finished in {:.1} s ({}); recording it once the database is back",
                result.job,
                result.runtime_seconds,
                result.state.as_str()
            ))
            .job(result.job)
            .run_id(result.run_id)
            .state(result.state.as_str())
            .duration(result.runtime_seconds),
        );
    };
    retry_noting(shared, slot, "recording the run", waiting, |conn| {
        record(shared, &mut conn.client, &mut conn.prepared, &result, true)
    })
}

fn skip_with_retry(
    shared: &Shared,
    slot: &mut Option<Conn>,
    claimed: &Claimed,
    elapsed: Duration,
    reason: &str,
) -> Option<Claimed> {
    let skipped_at = claimed.started_at
        + chrono::Duration::from_std(elapsed).unwrap_or_else(|_| chrono::Duration::zero());
    let skip = store::Skip {
        at: skipped_at,
        run_id: claimed.run_id,
        reason,
    };
    retry(shared, slot, "recording the skip", |conn| {
        let Conn {
            client, prepared, ..
        } = conn;
        let mut tx = client.transaction()?;
        // The job first, while its running_run still names this run (no
        // foreign key clears it since migration 0005): then the run goes.
        if let Some(row) = store::job_for_update(&mut tx, &claimed.job.name)? {
            if row.running_run == Some(claimed.run_id) {
                let next = row.next_run_after(skipped_at, true, shared.config.timezone);
                // Nothing to do ends a series of retries too (§13).
                store::finish_job(&mut tx, &row.name, None, Some(&skip), next, 1, false)?;
            }
        }
        store::delete_run(&mut tx, claimed.run_id)?;
        store::notify_runners(&mut tx)?;
        let next = claim_next(shared, &mut tx, prepared)?;
        tx.commit()?;
        Ok(next)
    })
}

/// Claim this worker's next run inside the transaction that records the last
/// one: under load a run then costs one commit, and the loop is not in the
/// path at all. Nothing is claimed once the runner is stopping.
fn claim_next(
    shared: &Shared,
    tx: &mut postgres::Transaction,
    prepared: &mut store::Prepared,
) -> Result<Option<Claimed>, postgres::Error> {
    if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(None);
    }
    Ok(store::claim_due(tx, prepared, &shared.claimant(), 1)?
        .into_iter()
        .next())
}

/// Run `write` until it succeeds (§17: a live runner never leaves a run
/// `running`). Every failed try is logged. A lost connection is reopened; a
/// database error on a live one — a deadlock with an application's
/// transaction, a `lock_timeout`, a serialization failure — is tried again
/// on the same connection after the same backoff.
fn retry<T>(
    shared: &Shared,
    slot: &mut Option<Conn>,
    what: &str,
    write: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
) -> T {
    retry_noting(shared, slot, what, || {}, write)
}

/// `retry`, calling `first_failure` once, when the first attempt fails.
fn retry_noting<T>(
    shared: &Shared,
    slot: &mut Option<Conn>,
    what: &str,
    first_failure: impl FnOnce(),
    mut write: impl FnMut(&mut Conn) -> Result<T, postgres::Error>,
) -> T {
    let mut attempt = 0;
    let mut first_failure = Some(first_failure);
    loop {
        // A server that refuses writes (a standby, §19) is a lost
        // connection: the next one may reach the new primary.
        let mut read_only = None;
        let error = match connection(shared, slot) {
            Ok(conn) => match write(conn) {
                Ok(value) => return value,
                Err(e) => {
                    let error = crate::db::describe_error(&e);
                    if crate::db::is_read_only(&e) {
                        read_only = Some(std::mem::take(&mut conn.host));
                        *slot = None;
                    } else if conn.client.is_closed() {
                        *slot = None;
                    }
                    error
                }
            },
            Err(e) => {
                *slot = None;
                if let Some(standby) = e.downcast_ref::<crate::db::Standby>() {
                    read_only = Some(standby.host.clone());
                }
                format!("{e:#}")
            }
        };
        if let Some(note) = first_failure.take() {
            note();
        }
        let wait = shared
            .timings()
            .backoff(attempt)
            .min(super::RECONNECT_WAIT_MAX);
        attempt += 1;
        match read_only {
            Some(host) => shared.log.error(crate::db::Standby::runner_line(&host)),
            None => shared.log.error(format!(
                "Error {what}: {error}; retrying in {:.1} s",
                wait.as_secs_f64()
            )),
        }
        std::thread::sleep(wait);
    }
}

/// The record transaction (§4 step 4): the history row ends; the job's last
/// run and state are set and it is rescheduled (at once when a run was
/// requested meanwhile); its trigger_next jobs are scheduled; its notification
/// is queued (and send_queued_mail triggered); the runners are woken. A run
/// someone already recorded (recovered as interrupted) is left alone. With
/// `claim`, the worker's next run is claimed in the same transaction.
pub fn record(
    shared: &Shared,
    client: &mut postgres::Client,
    prepared: &mut store::Prepared,
    r: &Record,
    claim: bool,
) -> Result<Recorded, postgres::Error> {
    let tz = shared.config.timezone;
    if let Some(next) = record_fast(shared, client, prepared, r, claim)? {
        return Ok(Recorded { next, retry: None });
    }
    let mut tx = client.transaction()?;
    let Some(attempt) = store::finish_run(
        &mut tx,
        r.run_id,
        r.state,
        r.finished_at,
        r.runtime_seconds,
        r.output,
    )?
    else {
        shared.log.event(
            Entry::warn(format!(
                "Run {} of job {} was already recorded by another runner; its result is dropped",
                r.run_id, r.job
            ))
            .job(r.job)
            .run_id(r.run_id),
        );
        tx.rollback()?;
        return Ok(Recorded::default());
    };
    let row = store::job_for_update(&mut tx, r.job)?;
    // Only a run that is still its job's own moves the job on.
    let ours = row
        .as_ref()
        .is_some_and(|j| j.running_run == Some(r.run_id));
    let after = match &row {
        // A job that cannot be started is disabled, never retried.
        Some(row) if ours && !r.disable => {
            row.after_run_started(attempt, r.state, r.started_at, r.finished_at, tz)
        }
        _ => AfterRun {
            next_run: None,
            next_attempt: 1,
            retry: None,
        },
    };
    let retry = after.retry;
    // A run stopped for a new one (§21) ends no series: the new run's
    // outcome is the one that counts, mails and chains.
    // (A run asked to stop that ended on its own first is an ordinary end.)
    let replaced =
        r.state == RunState::Interrupted && row.as_ref().is_some_and(|j| j.replaced(r.run_id));
    let notice = alerts::decide(shared, r, row.as_ref(), retry.is_some() || replaced);
    if ours {
        store::finish_job(
            &mut tx,
            r.job,
            Some(&store::Finish {
                at: r.finished_at,
                state: r.state,
                runtime_seconds: r.runtime_seconds,
                streak: notice.streak,
            }),
            None,
            after.next_run,
            after.next_attempt,
            r.disable,
        )?;
    }
    // trigger_next on any outcome, on_success / on_failure once the run or
    // its series ended that way (§21): all scheduled the same way.
    let chained: &[String] = match &row {
        Some(row) if ours && !replaced => row.chained(r.state, retry.is_some()),
        _ => &[],
    };
    let scheduled = if replaced { &[][..] } else { r.trigger_next };
    for target in scheduled.iter().chain(chained) {
        if !store::schedule_now(&mut tx, target)? {
            shared.log.event(
                Entry::warn(format!(
                    "Job {} triggers unknown job {target}; ignored",
                    r.job
                ))
                .job(r.job),
            );
        }
    }
    // Only the series' final failure is mailed (§13), and failures only
    // from the alert_after-th in a row (§14).
    alerts::queue(shared, &mut tx, r, row.as_ref(), notice.mail)?;
    store::notify_runners(&mut tx)?;
    let next = if claim {
        claim_next(shared, &mut tx, prepared)?
    } else {
        None
    };
    tx.commit()?;
    Ok(Recorded { next, retry })
}

/// What recording a run did: the worker's next claimed run, and the retry
/// the recorded run's failure scheduled, if any.
#[derive(Debug, Default)]
pub struct Recorded {
    pub next: Option<Claimed>,
    pub retry: Option<Retry>,
}

/// The log line of a finished run that did not succeed (§10, §13).
pub fn failure_line(
    shared: &Shared,
    job: &str,
    secs: f64,
    state: RunState,
    retry: Option<Retry>,
) -> String {
    let line = format!("Job {job} failed in {secs:.1} s ({state})");
    match retry {
        None => line,
        Some(retry) => format!(
            "{line}; retry {} of {} at {}",
            retry.number,
            retry.of,
            crate::schedule::human_instant(retry.at, shared.config.timezone)
        ),
    }
}

/// The common case in one statement: nothing to trigger, no mail to queue,
/// no retry to decide, and the job's configuration as it was when claimed.
/// None: take the general path (nothing was written).
///
/// A failure of a job with retries always takes the general path: the retry
/// rule, the one mail at the end of a series and the log line then live in
/// one place, and failures are rare enough that the hot path loses nothing.
/// The statement itself resets the attempt count (whatever it records ends a
/// series) and checks the retries are still those decided by here.
fn record_fast(
    shared: &Shared,
    client: &mut postgres::Client,
    prepared: &mut store::Prepared,
    r: &Record,
    claim: bool,
) -> Result<Option<Option<Claimed>>, postgres::Error> {
    let Some(job) = r.claimed_job else {
        return Ok(None);
    };
    if r.disable || !r.trigger_next.is_empty() || (r.state.is_failure() && job.retries() > 0) {
        return Ok(None);
    }
    // An overlap policy or a chain on outcome (§21): the general path.
    if job.overlap() != Overlap::Wait
        || !job.on_success().is_empty()
        || !job.on_failure().is_empty()
    {
        return Ok(None);
    }
    let notice = alerts::decide(shared, r, Some(job), false);
    let (Some(streak), alerts::Mail::None) = (notice.streak, notice.mail) else {
        return Ok(None);
    };
    // run_requested is false as claimed; the statement itself honours a
    // request made since.
    let next_run = job.next_run_after_run(r.started_at, r.finished_at, shared.config.timezone);
    let claim = (claim && !shared.stopping.load(std::sync::atomic::Ordering::SeqCst))
        .then(|| shared.claimant());
    store::record_fast(
        client,
        prepared,
        &store::FastRecord {
            run_id: r.run_id,
            state: r.state,
            finished_at: r.finished_at,
            runtime_seconds: r.runtime_seconds,
            output: r.output,
            next_run,
            job,
            streak,
            claim,
            wake_before: r.finished_at
                + chrono::Duration::from_std(shared.timings().heartbeat)
                    .unwrap_or_else(|_| chrono::Duration::zero()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_output_replaces_bad_utf8_drops_nul_and_says_what_was_cut() {
        assert_eq!(output_text(b"a\0b\xffc", 0), "ab\u{fffd}c");
        assert_eq!(
            output_text(b"abc", 7),
            "abc\n[output truncated: 7 bytes not stored]\n"
        );
    }
}
