//! The threads that feed the runner's one event channel: the LISTEN
//! connection and the signal handler.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use postgres::fallible_iterator::FallibleIterator;

use super::{Event, Shared, APPLICATION_NAME};
use crate::db::socket::SocketHandle;

/// A thread that holds its own connection, LISTENs, and turns every
/// notification this runner can act on (`can_act_on`) into `Event::Changed`.
/// When the connection breaks it reconnects with backoff; notifications sent meanwhile are lost, so a
/// reconnection is itself reported as a change (the loop rescans).
pub fn spawn_listener(shared: Arc<Shared>, events: Sender<Event>) -> anyhow::Result<()> {
    let mut client = shared.target.connect(APPLICATION_NAME)?;
    shared.set_listen_socket(SocketHandle::last_connected());
    crate::store::listen(&mut client)?;
    std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || loop {
            let error = {
                let mut notifications = client.notifications();
                let mut iter = notifications.blocking_iter();
                loop {
                    match iter.next() {
                        Ok(Some(notification)) => {
                            // A runner asks for one of our runs to be
                            // stopped for a new one (§21): done from here,
                            // whatever the loop is busy with.
                            if let Some(run_id) = notification
                                .payload()
                                .strip_prefix(crate::store::REPLACE_PREFIX)
                                .and_then(|id| id.parse::<i64>().ok())
                            {
                                shared.replace_run(run_id);
                            }
                            if !can_act_on(&shared.defined, notification.payload()) {
                                continue;
                            }
                            if events.send(Event::Changed).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                }
            };
            shared.set_listen_socket(None);
            if let Some(e) = error {
                shared.log.error(format!(
                    "The LISTEN connection failed: {}",
                    crate::db::describe_error(&e)
                ));
            }
            // Wake the loop: its own connection is probably gone too, and the
            // sooner it knows, the sooner it reconnects.
            if events.send(Event::Changed).is_err() {
                return;
            }
            let mut attempt = 0;
            client = loop {
                std::thread::sleep(
                    shared
                        .timings()
                        .backoff(attempt)
                        .min(super::RECONNECT_WAIT_MAX),
                );
                attempt += 1;
                match shared.target.connect(APPLICATION_NAME) {
                    Ok(mut c) => {
                        shared.set_listen_socket(SocketHandle::last_connected());
                        match crate::store::listen(&mut c) {
                            Ok(()) => break c,
                            Err(e) => shared
                                .log
                                .error(format!("LISTEN failed: {}", crate::db::describe_error(&e))),
                        }
                    }
                    Err(e) => match e.downcast_ref::<crate::db::Standby>() {
                        Some(standby) => shared
                            .log
                            .error(crate::db::Standby::runner_line(&standby.host)),
                        None => shared
                            .log
                            .error(format!("{e:#} (LISTEN connection); retrying")),
                    },
                }
            };
            shared.log.info("Listening for notifications again");
            if events.send(Event::Changed).is_err() {
                return;
            }
        })?;
    Ok(())
}

/// Whether a NOTIFY with this payload may give a runner that defines the
/// jobs `defined` work. An empty payload (a record, a change, a hold) may; a
/// trigger's payload is its job's name (`manage.trigger_job`), and a job the
/// runner does not define is never its to claim (§17): in a fleet, only the
/// runners that define a triggered job wake for it.
fn can_act_on(defined: &[String], payload: &str) -> bool {
    payload.is_empty() || defined.iter().any(|name| name == payload)
}

/// SIGTERM and SIGINT become `Event::Signal`, so shutdown goes through the
/// same channel as everything else (and are told to the guard).
pub fn spawn_signals(
    events: Sender<Event>,
    liveness: Arc<super::guard::Liveness>,
) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                // The guard too: it ends the runner if the loop is stuck.
                liveness.signalled();
                if events.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::can_act_on;

    #[test]
    fn a_runner_wakes_for_records_and_for_triggers_of_its_own_jobs_only() {
        let defined = vec!["backup".to_string(), "report".to_string()];
        assert!(can_act_on(&defined, ""));
        assert!(can_act_on(&defined, "report"));
        assert!(!can_act_on(&defined, "cleanup"));
        assert!(!can_act_on(&defined, "Report"));
        assert!(!can_act_on(&[], "report"));
        assert!(can_act_on(&[], ""));
    }
}
