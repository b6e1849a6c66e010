//! The embedded default: with no database configured, `manage` makes and
//! starts a private cluster under MANAGE_DATA_DIR, reuses it, and `db
//! status`/`db stop` report and stop it.

use std::os::unix::fs::PermissionsExt;

use crate::harness::Manage;

/// Stops the cluster even when an assertion fails.
struct StopOnDrop(std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Manage::new()
            .env("MANAGE_DATA_DIR", &self.0)
            .args(["db", "stop"])
            .run();
    }
}

#[test]
fn the_embedded_cluster_is_created_reused_reported_and_stopped() {
    let base = tempfile::tempdir().unwrap();
    // As root the server runs as an unprivileged user, who must be able to
    // reach the data directory.
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = base.path().join("data");
    let pg = data.join("pg");
    let manage = || Manage::new().env("MANAGE_DATA_DIR", &data);

    let status = manage().args(["db", "status"]).run();
    assert_eq!(status.code, 1);
    assert!(status.stdout.starts_with("not created"), "{status:?}");

    let _guard = StopOnDrop(data.clone());
    let first = manage().arg("migrate").ok();
    assert!(first
        .stdout
        .contains("Created scheduled job purge_job_history"));
    let notice: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.contains("embedded database"))
        .collect();
    assert_eq!(
        notice.len(),
        1,
        "one stderr line names the directory: {}",
        first.stderr
    );
    assert!(notice[0].contains(pg.to_str().unwrap()), "{}", notice[0]);

    let second = manage().args(["jobs", "list", "--json"]).ok();
    assert!(second.stdout.contains("purge_job_history"));
    let notice: Vec<&str> = second
        .stderr
        .lines()
        .filter(|l| l.contains("embedded database"))
        .collect();
    assert_eq!(notice.len(), 1);
    assert!(
        !notice[0].contains("created") && !notice[0].contains("started"),
        "reused: {}",
        notice[0]
    );

    let status = manage().args(["db", "status"]).ok();
    let line = status.stdout.trim_end();
    assert!(line.starts_with("running (pid "), "{line}");
    assert!(line.ends_with(&format!(") in {}", pg.display())), "{line}");

    manage().args(["db", "stop"]).ok();
    let status = manage().args(["db", "status"]).run();
    assert_eq!(status.code, 1);
    assert!(status.stdout.starts_with("not running"), "{status:?}");
    assert!(status.stdout.contains(pg.to_str().unwrap()));
}
