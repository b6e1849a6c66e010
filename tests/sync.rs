//! Sync: `manage migrate` creates, updates, removes and revives jobs, printing
//! exactly one line per change, and keeps operator configuration and history.

use crate::harness::TestDb;

const BACKUP: &str = "[jobs.backup]\ncommand = \"echo backup\"\ndescription = \"Nightly backup\"\ntimes = [\"02:00\"]\n";

#[test]
fn migrate_creates_builtin_and_declared_jobs_once() {
    let db = TestDb::new();
    let run = db.manage().config(BACKUP).arg("migrate").ok();
    assert_eq!(
        run.stdout,
        "Created scheduled job backup\nCreated scheduled job purge_job_history\nCreated scheduled job send_queued_mail\n"
    );
    let again = db.manage().config(BACKUP).arg("migrate").ok();
    assert_eq!(again.stdout, "", "unchanged jobs print nothing");
    assert_eq!(
        db.value("SELECT app || ' ' || description || ' ' || internal || ' ' || timeout_seconds FROM manage.jobs WHERE name = 'backup'"),
        "local Nightly backup false 120"
    );
    assert_ne!(
        db.value("SELECT next_run FROM manage.jobs WHERE name = 'backup'"),
        "NULL"
    );
}

#[test]
fn a_changed_definition_is_updated_and_operator_configuration_kept() {
    let db = TestDb::new();
    db.manage().config(BACKUP).arg("migrate").ok();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET enabled = false, notify_on_success = true, override_interval_seconds = 600 WHERE name = 'backup';
             INSERT INTO manage.runs (job, state, finished_at, output) VALUES ('backup', 'succeeded', now(), 'ok');",
        )
        .unwrap();
    let changed = BACKUP.replace("Nightly backup", "Nightly database backup");
    let run = db.manage().config(&changed).arg("migrate").ok();
    assert_eq!(run.stdout, "Updated scheduled job backup\n");
    assert_eq!(
        db.value("SELECT description || ' ' || enabled || ' ' || notify_on_success || ' ' || override_interval_seconds FROM manage.jobs WHERE name = 'backup'"),
        "Nightly database backup false true 600"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs WHERE job = 'backup'"),
        "1"
    );

    // Every defined field counts: the command, env, timeout…
    let changed = changed.replace("echo backup", "echo backup2");
    assert_eq!(
        db.manage().config(&changed).arg("migrate").ok().stdout,
        "Updated scheduled job backup\n"
    );
    let changed = format!("{changed}timeout = \"10:00\"\n");
    assert_eq!(
        db.manage().config(&changed).arg("migrate").ok().stdout,
        "Updated scheduled job backup\n"
    );
    let changed = format!("{changed}[jobs.backup.env]\nLEVEL = \"9\"\n");
    assert_eq!(
        db.manage().config(&changed).arg("migrate").ok().stdout,
        "Updated scheduled job backup\n"
    );
}

#[test]
fn notify_on_success_from_the_file_is_only_the_initial_value() {
    let db = TestDb::new();
    db.manage().config(BACKUP).arg("migrate").ok();
    assert_eq!(
        db.value("SELECT notify_on_success FROM manage.jobs WHERE name = 'backup'"),
        "f"
    );
    let changed = format!("{BACKUP}notify_on_success = true\n");
    assert_eq!(db.manage().config(&changed).arg("migrate").ok().stdout, "");
    assert_eq!(
        db.value("SELECT notify_on_success FROM manage.jobs WHERE name = 'backup'"),
        "f"
    );
}

#[test]
fn a_vanished_job_is_removed_and_revived_with_its_configuration_and_history() {
    let db = TestDb::new();
    db.manage().config(BACKUP).arg("migrate").ok();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET notify_on_success = true, override_times = '{04:00:00}' WHERE name = 'backup';
             INSERT INTO manage.runs (job, state, finished_at, output) VALUES ('backup', 'failed', now(), 'boom');",
        )
        .unwrap();
    let run = db.manage().arg("migrate").ok();
    assert_eq!(run.stdout, "Removed scheduled job backup\n");
    assert_eq!(
        db.value("SELECT removed::text || ' ' || coalesce(next_run::text, 'none') FROM manage.jobs WHERE name = 'backup'"),
        "true none"
    );
    // Hidden from lists.
    let list = db.manage().args(["jobs", "list", "--json"]).json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["name"] != "backup"));
    assert_eq!(
        db.manage().arg("migrate").ok().stdout,
        "",
        "removing twice prints nothing"
    );

    let run = db.manage().config(BACKUP).arg("migrate").ok();
    assert_eq!(run.stdout, "Revived scheduled job backup\n");
    let job = db
        .manage()
        .config(BACKUP)
        .args(["jobs", "show", "backup", "--json"])
        .json();
    assert_eq!(job["notify_on_success"], true);
    assert_eq!(job["override_times"], serde_json::json!(["04:00:00"]));
    assert_eq!(job["history"].as_array().unwrap().len(), 1);
    assert!(job["next_run"].as_str().unwrap().contains("T04:00:00.000"));
}

#[test]
fn an_override_equal_to_the_new_builtin_schedule_is_dropped() {
    let db = TestDb::new();
    db.manage().config(BACKUP).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET override_times = '{05:00:00}' WHERE name = 'backup'")
        .unwrap();
    let changed = BACKUP.replace("02:00", "05:00");
    assert_eq!(
        db.manage().config(&changed).arg("migrate").ok().stdout,
        "Updated scheduled job backup\n"
    );
    assert_eq!(
        db.value(
            "SELECT coalesce(override_times::text, 'none') FROM manage.jobs WHERE name = 'backup'"
        ),
        "none"
    );
}

#[test]
fn concurrent_migrations_apply_once() {
    let db = TestDb::new();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let command = db.manage().config(BACKUP).arg("migrate");
            std::thread::spawn(move || command.run())
        })
        .collect();
    let outputs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(outputs.iter().all(|o| o.code == 0), "{outputs:?}");
    let created: usize = outputs
        .iter()
        .map(|o| o.stdout.matches("Created").count())
        .sum();
    assert_eq!(created, 3, "each job is created exactly once: {outputs:?}");
}
