//! Jitter (§21): each slot of a job is delayed by an offset in [0, jitter)
//! derived from the job's name and the slot, the same for `jobs next` and
//! every runner.

use std::time::Duration;

use chrono::{DateTime, Utc};
use manage::schedule::Jitter;

use crate::harness::{wait_for, TestDb};

const JOBS: &str = r#"
timezone = "Europe/Stockholm"

[jobs.spread]
command = "true"
times = ["02:30", "03:30"]
jitter = "00:10:00"

[jobs.tick]
command = "true"
interval = "00:02"
jitter = "00:02"
"#;

/// `jobs show NAME --json`.
fn show(db: &TestDb, name: &str) -> serde_json::Value {
    db.job_json(JOBS, name)
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

#[test]
fn jobs_next_lists_each_slot_delayed_by_its_own_offset_across_spring_forward() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let listed = db
        .manage()
        .config(JOBS)
        .args([
            "jobs",
            "next",
            "spread",
            "--count",
            "4",
            "--after",
            "2026-03-28T12:00:00+01:00",
            "--json",
        ])
        .json();
    // 02:30 does not exist on 29 March in Stockholm: that slot runs at the
    // gap's end, 03:00 CEST = 01:00 UTC, and 03:30 CEST merges with nothing.
    let slots = [
        "2026-03-29T01:00:00Z",
        "2026-03-29T01:30:00Z",
        "2026-03-30T00:30:00Z",
        "2026-03-30T01:30:00Z",
    ];
    let jitter = Jitter {
        name: "spread",
        secs: 600,
    };
    let got: Vec<DateTime<Utc>> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| instant(v.as_str().unwrap()))
        .collect();
    let expected: Vec<DateTime<Utc>> = slots.iter().map(|s| jitter.apply(instant(s))).collect();
    assert_eq!(got, expected);
    for (slot, run) in slots.iter().zip(&got) {
        let delay = *run - instant(slot);
        assert!(delay >= chrono::Duration::zero() && delay < chrono::Duration::minutes(10));
    }

    let job = show(&db, "spread");
    assert_eq!(job["jitter"], "00:10:00");
    let human = db
        .manage()
        .config(JOBS)
        .args(["jobs", "show", "spread"])
        .ok();
    assert!(
        human.stdout.contains("up to 00:10:00 after each slot"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_jitter_wider_than_the_gap_between_slots_is_refused() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db.manage()
        .config("[jobs.x]\ncommand = \"true\"\ninterval = \"00:05:00\"\njitter = \"00:06:00\"\n")
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.x.jitter", "00:06:00", "00:05:00"]);
    db.manage()
        .config("[jobs.x]\ncommand = \"true\"\njitter = \"00:06:00\"\n")
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.x.jitter", "schedule"]);
    let before = show(&db, "spread");
    db.manage()
        .config(JOBS)
        .args(["jobs", "configure", "spread", "--jitter", "02:00:00"])
        .run()
        .assert_bad_input(&["--jitter", "spread", "02:00:00", "01:00:00"]);
    let after = show(&db, "spread");
    assert_eq!(before["jitter"], after["jitter"], "nothing changed");
    // Within the gap it is taken, shown as the operator's, and audited.
    let set = db
        .manage()
        .config(JOBS)
        .args(["jobs", "configure", "spread", "--jitter", "00:30:00"])
        .ok();
    assert!(
        set.stdout
            .contains("Jitter:             up to 00:30:00 after each slot (override)"),
        "{}",
        set.stdout
    );
    let audit = db
        .manage()
        .config(JOBS)
        .args(["jobs", "audit", "--json"])
        .json();
    assert!(
        audit.to_string().contains("jitter: 00:10:00 → 00:30:00"),
        "{audit}"
    );
    db.manage()
        .config(JOBS)
        .args(["jobs", "configure", "spread", "--clear-jitter"])
        .ok();
    let cleared = show(&db, "spread");
    assert_eq!(cleared["jitter"], "00:10:00", "back to the declared one");
}

#[test]
fn the_runner_starts_each_interval_run_within_the_jitter_after_its_slot() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET enabled = false WHERE name = 'spread'")
        .unwrap();
    let runner = db
        .manage()
        .config(JOBS)
        .args(["scheduled_jobs_runner", "--no-migrate"])
        .spawn();
    let mut gaps: Vec<f64> = Vec::new();
    wait_for(Duration::from_secs(40), "five runs of tick", || {
        let rows = db
            .client()
            .query(
                "SELECT started_at, finished_at FROM manage.runs WHERE job = 'tick' \
                 AND state = 'succeeded' ORDER BY id",
                &[],
            )
            .unwrap();
        let runs: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        gaps = runs
            .windows(2)
            .map(|w| (w[1].0 - w[0].1).num_milliseconds() as f64 / 1000.0)
            .collect();
        gaps.len() >= 4
    });
    runner.stop();
    // Each run comes 2 s after the previous one ended, plus its offset below 2 s.
    for gap in &gaps {
        assert!((2.0..4.5).contains(gap), "gaps {gaps:?}");
    }
    // Offsets differ from slot to slot: the gaps are not all alike.
    let spread = gaps.iter().cloned().fold(f64::MIN, f64::max)
        - gaps.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.05, "gaps {gaps:?}");
}
