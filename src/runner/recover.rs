//! Recording runs whose runner is gone — dead, or this one shutting down —
//! as `interrupted`: the output captured so far plus a final `Interrupted:`
//! line, the job's state and next run, and its notification.

use super::worker::{failure_line, record, Record};
use super::{Entry, Shared};
use crate::job::{Outcome, RunState};
use crate::process;
use crate::store::{self, OrphanRun};

/// Find the `running` rows of dead runners and record them interrupted. The
/// run's leftover processes are killed first: every one carrying the run's
/// mark (§18), then a group that is provably the run's: on this machine, in
/// this boot, led by the process the run started (§17).
pub fn recover_orphans(
    shared: &Shared,
    client: &mut postgres::Client,
    prepared: &mut store::Prepared,
) -> Result<(), postgres::Error> {
    for orphan in store::orphan_runs(client, shared.timings().dead_after)? {
        interrupt(
            shared,
            client,
            prepared,
            &orphan,
            "Interrupted: the runner running this job died or lost its database",
        )?;
        // Each recorded run is a round trip that answered: a long recovery
        // is not a silent database (see guard.rs).
        shared.liveness.contact();
    }
    Ok(())
}

/// At shutdown, after the grace: this runner's own runs that are still open.
pub fn interrupt_own_runs(
    shared: &Shared,
    client: &mut postgres::Client,
    prepared: &mut store::Prepared,
    reason: &str,
) {
    let result = (|| -> Result<(), postgres::Error> {
        for orphan in store::own_running_runs(client, shared.runner_id)? {
            interrupt(shared, client, prepared, &orphan, reason)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        shared.log.error(format!(
            "Could not record the interrupted runs: {}",
            crate::db::describe_error(&e)
        ));
    }
}

/// After a reconnection: this runner's `running` rows that none of its
/// workers holds. After a failover (§19) the new primary may have a claim
/// whose answer never reached us (the old primary died between its commit
/// and its reply), or, with asynchronous replication, a run whose record was
/// lost with the old primary: nobody will ever record either, so they are
/// recorded interrupted, as a dead runner's would be.
pub fn interrupt_lost_claims(
    shared: &Shared,
    client: &mut postgres::Client,
    prepared: &mut store::Prepared,
) {
    let result = (|| -> Result<(), postgres::Error> {
        for orphan in store::own_running_runs(client, shared.runner_id)? {
            if !shared.is_run_open(orphan.id) {
                interrupt(
                    shared,
                    client,
                    prepared,
                    &orphan,
                    "Interrupted: its claim was lost in a database failover",
                )?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        shared.log.error(format!(
            "Could not record the runs lost in the failover: {}",
            crate::db::describe_error(&e)
        ));
    }
}

fn interrupt(
    shared: &Shared,
    client: &mut postgres::Client,
    prepared: &mut store::Prepared,
    orphan: &OrphanRun,
    reason: &str,
) -> Result<(), postgres::Error> {
    // Lock the row first: two runners noticing the same death record it once.
    let mut tx = client.transaction()?;
    if !store::lock_running_run(&mut tx, orphan.id)? {
        return tx.rollback();
    }
    // First every process that carries the run's mark (§18): the group's
    // leader may be gone and a grandchild may have left the group, but the
    // token is random per run, so what carries it is the run's and nothing
    // else is touched.
    if let Some(token) = orphan.token.as_deref() {
        let killed = process::kill_marked(token);
        if !killed.is_empty() {
            let pids: Vec<String> = killed.iter().map(i32::to_string).collect();
            shared.log.event(
                Entry::warn(format!(
                    "Killed {} leftover process{} of run {} (pid {}), found by the run's mark",
                    killed.len(),
                    if killed.len() == 1 { "" } else { "es" },
                    orphan.id,
                    pids.join(", ")
                ))
                .job(&orphan.job)
                .run_id(orphan.id),
            );
        }
    }
    // Then the group, for what is left of it: a process that dropped the
    // mark from its environment, or a run recorded before runs had one.
    if let Some(group) = orphan
        .group
        .as_ref()
        .filter(|g| process::group_alive(g.pgid))
    {
        let pgid = group.pgid;
        // The check and the kill are not atomic, but between them the leader
        // would have to die, be reaped and its pid come round again.
        match group.still_the_same() {
            Ok(()) => {
                process::kill_group(pgid, libc::SIGKILL);
                shared.log.event(
                    Entry::warn(format!(
                        "Killed the leftover process group {pgid} of run {}",
                        orphan.id
                    ))
                    .job(&orphan.job)
                    .run_id(orphan.id),
                );
            }
            Err(why) => shared.log.event(
                Entry::warn(format!(
                    "Left the process group {pgid} of run {} alone, not provably the run's: {why}",
                    orphan.id
                ))
                .job(&orphan.job)
                .run_id(orphan.id),
            ),
        }
    }
    let now = store::db_now(&mut tx)?;
    tx.commit()?;
    let description = store::job(client, &orphan.job)?
        .map(|j| j.description)
        .unwrap_or_else(|| orphan.job.clone());
    let mut output = orphan.output.clone();
    if !output.is_empty() && !output.ends_with('\n') {
        output.push('\n');
    }
    output.push_str(reason);
    let runtime = (now - orphan.started_at).num_milliseconds().max(0) as f64 / 1000.0;
    let recorded = record(
        shared,
        client,
        prepared,
        &Record {
            run_id: orphan.id,
            job: &orphan.job,
            description: &description,
            state: RunState::Interrupted,
            started_at: orphan.started_at,
            finished_at: now,
            runtime_seconds: runtime,
            output: &output,
            disable: false,
            outcome: Outcome::Interrupted,
            trigger_next: &[],
            claimed_job: None,
        },
        false,
    )?;
    shared.log.event(
        Entry::warn(format!(
            "{}: run {}",
            failure_line(
                shared,
                &orphan.job,
                runtime,
                RunState::Interrupted,
                recorded.retry
            ),
            orphan.id
        ))
        .job(&orphan.job)
        .run_id(orphan.id)
        .state(RunState::Interrupted.as_str())
        .duration(runtime),
    );
    Ok(())
}
