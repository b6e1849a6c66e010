//! Configuration: precedence, and every bad input → exit 2 with one `error:`
//! line naming the file, the key and the value, and nothing changed.

use crate::harness::{Manage, TestDb};

/// A bad configuration is refused before anything touches the database.
fn assert_config_rejected(toml: &str, needles: &[&str]) {
    let db = TestDb::new();
    let run = db.manage().config(toml).arg("migrate").run();
    run.assert_bad_input(needles);
    assert_eq!(
        db.value("SELECT count(*) FROM manage.jobs"),
        "0",
        "nothing may change on bad input"
    );
}

#[test]
fn unknown_key_names_file_and_key() {
    assert_config_rejected("colour = true\n", &[".toml", "colour", "unknown key"]);
    assert_config_rejected("[runner]\nparallel = 3\n", &[".toml", "runner.parallel"]);
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\nschedule = \"daily\"\n",
        &["jobs.backup.schedule", "unknown key"],
    );
}

#[test]
fn bad_durations_are_rejected_with_their_value() {
    for bad in ["00:00", "1:2:3:4", "12:60", ""] {
        let toml = format!("[jobs.backup]\ncommand = \"true\"\ninterval = \"{bad}\"\n");
        assert_config_rejected(
            &toml,
            &[".toml", "jobs.backup.interval", &format!("\"{bad}\"")],
        );
    }
    assert_config_rejected(
        "[runner]\nshutdown_grace = \"00:00\"\n",
        &["runner.shutdown_grace", "\"00:00\""],
    );
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\ntimeout = \"12:60\"\n",
        &["jobs.backup.timeout", "\"12:60\""],
    );
}

#[test]
fn bad_times_are_rejected_with_their_value() {
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\ntimes = [\"03:00\", \"25:00\"]\n",
        &["jobs.backup.times", "\"25:00\""],
    );
}

#[test]
fn times_and_interval_together_are_an_error() {
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\ntimes = [\"03:00\"]\ninterval = \"05:00\"\n",
        &["jobs.backup", "both times and interval"],
    );
}

#[test]
fn a_declared_job_named_like_a_builtin_or_a_command_is_an_error() {
    assert_config_rejected(
        "[jobs.purge_job_history]\ncommand = \"true\"\n",
        &["jobs.purge_job_history", "built-in job"],
    );
    // Every command, `metrics` (once forgotten: the job shadowed the
    // command) and clap's own `help` included.
    for command in [
        "jobs",
        "migrate",
        "check",
        "scheduled_jobs_runner",
        "list_unscheduled_commands",
        "metrics",
        "mail",
        "completions",
        "man",
        "web",
        "db",
        "help",
    ] {
        let toml = format!("[jobs.{command}]\ncommand = \"true\"\n");
        assert_config_rejected(&toml, &[&format!("jobs.{command}"), "manage command"]);
    }
    assert_config_rejected(
        "[jobs.Backup]\ncommand = \"true\"\n",
        &["jobs.Backup", "not a valid job name"],
    );
}

#[test]
fn an_unknown_trigger_next_is_an_error() {
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\ntrigger_next = [\"nosuchjob\"]\n",
        &["jobs.backup.trigger_next", "\"nosuchjob\""],
    );
}

#[test]
fn history_retention_days_must_be_at_least_one() {
    assert_config_rejected(
        "history_retention_days = 0\n",
        &["history_retention_days", "0"],
    );
}

#[test]
fn invalid_toml_and_unknown_zone_are_errors() {
    assert_config_rejected("timezone = \n", &[".toml", "invalid TOML"]);
    assert_config_rejected(
        "timezone = \"Mars/Olympus\"\n",
        &["timezone", "\"Mars/Olympus\""],
    );
    let db = TestDb::new();
    db.manage()
        .env("MANAGE_TIMEZONE", "Mars/Olympus")
        .arg("migrate")
        .run()
        .assert_bad_input(&["MANAGE_TIMEZONE", "\"Mars/Olympus\""]);
}

#[test]
fn precedence_is_flag_then_environment_then_file() {
    let good = TestDb::new();
    let other = TestDb::new();
    // The file names a database that does not exist; the environment wins.
    let file = "database_url = \"host=/nonexistent dbname=nowhere\"\n";
    good.manage().config(file).arg("migrate").ok();
    assert_eq!(good.value("SELECT count(*) FROM manage.jobs"), "2");
    // The flag beats the environment.
    good.manage()
        .config(file)
        .args(["migrate", "--database-url", &other.url])
        .ok();
    assert_eq!(other.value("SELECT count(*) FROM manage.jobs"), "2");
    // And the file is used when nothing else is set.
    let from_file = format!("database_url = \"{}\"\n", other.url);
    let run = Manage::new()
        .config(&from_file)
        .args(["jobs", "list", "--json"])
        .ok();
    assert!(run.stdout.contains("purge_job_history"));
    // MANAGE_TIMEZONE beats the file's timezone.
    let json = good
        .manage()
        .config("timezone = \"Asia/Tokyo\"\n")
        .env("MANAGE_TIMEZONE", "America/New_York")
        .args(["jobs", "show", "purge_job_history", "--json"])
        .json();
    let next = json["next_run"].as_str().unwrap();
    assert!(
        next.ends_with("-05:00") || next.ends_with("-04:00"),
        "{next}"
    );
}

#[test]
fn help_works_with_a_broken_configuration_and_says_so() {
    let run = Manage::new().config("bogus = 1\n").arg("--help").run();
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("purge_job_history"));
    let warning = run.stderr.lines().next().unwrap();
    assert!(warning.starts_with("warning: "), "{warning}");
    assert!(
        warning.ends_with("; declared jobs are not listed"),
        "{warning}"
    );
}

#[test]
fn help_needs_no_database_and_lists_jobs() {
    let run = Manage::new()
        .env("DATABASE_URL", "host=/nonexistent dbname=x")
        .config("[jobs.clean_tmp]\ncommand = \"true\"\ndescription = \"Clean temporary files\"\n")
        .arg("--help")
        .ok();
    for name in ["migrate", "jobs", "purge_job_history", "clean_tmp"] {
        assert!(run.stdout.contains(name), "{name} missing from --help");
    }
    let run = Manage::new()
        .env("DATABASE_URL", "host=/nonexistent dbname=x")
        .args(["purge_job_history", "--help"])
        .ok();
    assert!(run.stdout.contains("--keep-days"));
}

#[test]
fn a_nul_byte_in_any_string_names_file_and_key() {
    // PostgreSQL text cannot hold NUL: refused here, not by the database.
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\ndescription = \"nightly\\u0000\"\n",
        &[".toml", "jobs.backup.description", "NUL"],
    );
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\nenv = { TARGET = \"/srv\\u0000\" }\n",
        &[".toml", "jobs.backup.env.TARGET", "NUL"],
    );
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\ntrigger_next = [\"x\\u0000\"]\n",
        &[".toml", "jobs.backup.trigger_next", "NUL"],
    );
    assert_config_rejected(
        "[notifications]\nsender = \"manage\\u0000@example.org\"\n",
        &[".toml", "notifications.sender", "NUL"],
    );
}

#[test]
fn an_env_key_with_equals_or_empty_names_file_and_key() {
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\nenv = { \"A=B\" = \"1\" }\n",
        &[".toml", "jobs.backup.env.\"A=B\"", "\"=\""],
    );
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\nenv = { \"\" = \"1\" }\n",
        &[".toml", "jobs.backup.env.\"\"", "empty"],
    );
    assert_config_rejected(
        "[jobs.backup]\ncommand = \"true\"\nenv = { \"A\\u0000\" = \"1\" }\n",
        &[".toml", "jobs.backup.env.\"A\\u0000\"", "NUL"],
    );
}

#[test]
fn a_trigger_next_cycle_names_file_key_and_cycle() {
    assert_config_rejected(
        "[jobs.a]\ncommand = \"true\"\ntrigger_next = [\"a\"]\n",
        &[".toml", "jobs.a.trigger_next", "a → a", "cycle"],
    );
    assert_config_rejected(
        "[jobs.a]\ncommand = \"true\"\ntrigger_next = [\"b\"]\n\
         [jobs.b]\ncommand = \"true\"\ntrigger_next = [\"c\"]\n\
         [jobs.c]\ncommand = \"true\"\ntrigger_next = [\"purge_job_history\", \"a\"]\n",
        &[".toml", "jobs.a.trigger_next", "a → b → c → a", "cycle"],
    );
    // A chain that ends, and two jobs triggering the same one, are fine.
    let db = TestDb::new();
    db.manage()
        .config(
            "[jobs.a]\ncommand = \"true\"\ntrigger_next = [\"b\", \"c\"]\n\
             [jobs.b]\ncommand = \"true\"\ntrigger_next = [\"c\"]\n\
             [jobs.c]\ncommand = \"true\"\ntrigger_next = [\"purge_job_history\"]\n",
        )
        .arg("migrate")
        .ok();
}

#[test]
fn an_empty_manage_config_counts_as_unset() {
    let db = TestDb::new();
    std::fs::write(
        db.home().join("manage.toml"),
        "[jobs.from_default_file]\ncommand = \"true\"\n",
    )
    .unwrap();
    db.manage().env("MANAGE_CONFIG", "").arg("migrate").ok();
    assert_eq!(
        db.value("SELECT count(*) FROM manage.jobs WHERE name = 'from_default_file'"),
        "1"
    );
}
