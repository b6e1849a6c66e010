//! Notifications end to end: jobs run by the real runner, mail queued in the
//! record transaction and delivered by `send_queued_mail` to a real SMTP
//! server (tests/smtp.rs) — plain, STARTTLS, implicit TLS — or to a sendmail
//! script; `manage mail queue`; `manage check --send-test-mail`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::TestDb;
use crate::smtp::{free_port, SmtpServer, TestCert, PASSWORD, USER};

const RECIPIENT: &str = "ops@example.com";
const SENDER: &str = "jobs@example.com";

/// A configuration with notifications to ops@example.com over `transport`
/// (the lines under `[notifications]`), then `jobs`.
fn config(transport: &str, jobs: &str) -> String {
    format!("[notifications]\nemail = \"{RECIPIENT}\"\nsender = \"{SENDER}\"\n{transport}\n{jobs}")
}

fn smtp_url(port: u16) -> String {
    format!("smtp_url = \"smtp://127.0.0.1:{port}\"")
}

/// Put `count` mails in the queue directly, oldest first: `mail 1`, `mail 2`, …
fn queue_mails(db: &TestDb, count: u32) {
    db.client()
        .batch_execute(&format!(
            "INSERT INTO manage.mail_queue (recipient, sender, subject, body, headers, queued_at) \
             SELECT '{RECIPIENT}', '{SENDER}', 'mail ' || i, 'body ' || i || E'\\n', \
                    '{{\"Auto-Submitted\": \"auto-generated\", \"X-Auto-Response-Suppress\": \"All\"}}', \
                    now() - interval '1 hour' + i * interval '1 second' \
             FROM generate_series(1, {count}) i"
        ))
        .unwrap();
}

fn job_runs(db: &TestDb, job: &str) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT state FROM manage.runs WHERE job = '{job}' ORDER BY id"
    ))
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

#[test]
fn a_failing_job_sends_exactly_one_mail_with_the_subject_body_and_headers_of_the_spec() {
    let server = SmtpServer::plain();
    let config = config(
        &smtp_url(server.port),
        "[jobs.bad]\ncommand = \"echo oops; exit 3\"\ndescription = \"Bad job\"\ninterval = \"01:00:00\"\n",
    );
    let db = TestDb::new();
    let run = db.run_once(&config, &["bad"]);
    assert_eq!(run.code, 1, "the failed job decides --once's exit code");
    let mails = server.wait_for(1);
    assert_eq!(job_runs(&db, "send_queued_mail"), ["succeeded"]);
    assert_eq!(db.queue_len(), 0, "a delivered mail leaves the queue");
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    eprintln!("---- the mail as the server received it ----\n{}", mail.raw);

    assert_eq!(mail.from, SENDER);
    assert_eq!(mail.to, [RECIPIENT]);
    assert_eq!(mail.header("From").as_deref(), Some(SENDER));
    assert_eq!(mail.header("To").as_deref(), Some(RECIPIENT));
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Scheduled job 'Bad job' failed")
    );
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(
        mail.header("X-Auto-Response-Suppress").as_deref(),
        Some("All")
    );
    assert_eq!(
        mail.header("Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(mail.header("Date").is_some() && mail.header("Message-ID").is_some());

    let host = db.value("SELECT host FROM manage.runs WHERE job = 'bad'");
    let runtime: f64 = db
        .value("SELECT runtime_seconds FROM manage.runs WHERE job = 'bad'")
        .parse()
        .unwrap();
    let started = db.value(
        "SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM manage.runs WHERE job = 'bad'",
    );
    assert_eq!(
        mail.body(),
        format!(
            "Exit code 3\noops\n\nJob: bad (Bad job)\nHost: {host}\nStarted: {started} UTC\nRuntime: {runtime:.1} s\nState: failed\n"
        )
    );
}

#[test]
fn a_success_is_mailed_only_with_output_and_notify_on_success() {
    let server = SmtpServer::plain();
    let config = config(
        &smtp_url(server.port),
        "[jobs.chatty]\ncommand = \"echo hello\"\ndescription = \"Chatty job\"\ninterval = \"01:00:00\"\nnotify_on_success = true\n\
         [jobs.quiet]\ncommand = \"true\"\ninterval = \"01:00:00\"\nnotify_on_success = true\n\
         [jobs.unasked]\ncommand = \"echo hi\"\ninterval = \"01:00:00\"\n",
    );
    let db = TestDb::new();
    let run = db.run_once(&config, &["chatty", "quiet", "unasked"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mails = server.wait_for(1);
    std::thread::sleep(Duration::from_millis(300));
    let mails = if server.received().len() > mails.len() {
        server.received()
    } else {
        mails
    };
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Scheduled job 'Chatty job' completed")
    );
    assert!(mails[0]
        .body()
        .starts_with("hello\n\nJob: chatty (Chatty job)\n"));
}

#[test]
fn with_the_server_down_mail_stays_queued_and_is_delivered_exactly_once_when_it_is_back() {
    let port = free_port();
    let config = config(
        &smtp_url(port),
        "[jobs.one]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n\
         [jobs.two]\ncommand = \"exit 2\"\ninterval = \"01:00:00\"\n",
    );
    let db = TestDb::new();
    let run = db.run_once(&config, &["one", "two"]);
    assert_eq!(run.code, 1);
    assert_eq!(job_runs(&db, "one"), ["failed"], "the jobs' own runs stand");
    assert_eq!(job_runs(&db, "two"), ["failed"]);
    let sender_runs = job_runs(&db, "send_queued_mail");
    assert!(
        !sender_runs.is_empty() && sender_runs.iter().all(|s| s == "failed"),
        "{sender_runs:?}"
    );
    assert_eq!(
        db.queue_len(),
        2,
        "no mail about the failed sender, none lost"
    );
    let queue = db
        .manage()
        .config(&config)
        .args(["mail", "queue", "--json"])
        .json();
    for mail in queue.as_array().unwrap() {
        assert!(mail["attempts"].as_i64().unwrap() >= 1, "{queue}");
        assert!(!mail["last_error"].as_str().unwrap().is_empty(), "{queue}");
    }
    assert!(db
        .value("SELECT bool_and(last_attempt_at IS NOT NULL) FROM manage.mail_queue")
        .starts_with('t'));
    let table = db
        .manage()
        .config(&config)
        .args(["mail", "queue"])
        .ok()
        .stdout;
    assert!(
        table.contains("LAST ERROR") && table.contains(RECIPIENT),
        "{table}"
    );

    let server = SmtpServer::plain_on(port);
    let sent = db
        .manage()
        .config(&config)
        .arg("send_queued_mail")
        .ok()
        .stdout;
    assert!(
        sent.contains("Sent 2 of 2 queued mails; 0 left in the queue"),
        "{sent}"
    );
    assert_eq!(server.wait_for(2).len(), 2);
    let again = db
        .manage()
        .config(&config)
        .arg("send_queued_mail")
        .ok()
        .stdout;
    assert!(again.contains("No mail is queued"), "{again}");
    std::thread::sleep(Duration::from_millis(200));
    let subjects: BTreeSet<String> = server
        .received()
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    assert_eq!(server.received().len(), 2, "each delivered exactly once");
    assert_eq!(
        subjects,
        BTreeSet::from([
            "Scheduled job 'one' failed".to_string(),
            "Scheduled job 'two' failed".to_string()
        ])
    );
}

#[test]
fn a_refused_recipient_keeps_its_error_while_the_other_mails_go() {
    let server = SmtpServer::plain();
    let config = config(&smtp_url(server.port), "");
    let db = TestDb::new();
    queue_mails(&db, 3);
    db.client()
        .batch_execute("UPDATE manage.mail_queue SET recipient = 'reject@example.com' WHERE subject = 'mail 2'")
        .unwrap();
    let run = db.manage().config(&config).arg("send_queued_mail").run();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run
        .stdout
        .contains("Sent 2 of 3 queued mails; 1 left in the queue"));
    assert_eq!(server.wait_for(2).len(), 2);
    let left = db.query_strings("SELECT subject, attempts, last_error FROM manage.mail_queue");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0][0], "mail 2");
    assert_eq!(left[0][1], "1");
    assert!(left[0][2].contains("550"), "{left:?}");
}

#[test]
fn two_senders_at_once_never_send_a_mail_twice() {
    let server = SmtpServer::plain();
    let config = config(&smtp_url(server.port), "");
    let db = TestDb::new();
    queue_mails(&db, 30);
    let mut first = db.manage().config(&config).arg("send_queued_mail").spawn();
    let mut second = db.manage().config(&config).arg("send_queued_mail").spawn();
    assert_eq!(first.wait_exit(Duration::from_secs(60)), Some(0));
    assert_eq!(second.wait_exit(Duration::from_secs(60)), Some(0));
    // Whoever came second either found the lock taken or the queue empty;
    // a third pass picks up anything the race left.
    db.manage().config(&config).arg("send_queued_mail").ok();
    let mails = server.wait_for(30);
    std::thread::sleep(Duration::from_millis(300));
    let subjects: Vec<String> = server
        .received()
        .iter()
        .filter_map(|m| m.header("Subject"))
        .collect();
    let distinct: BTreeSet<&String> = subjects.iter().collect();

    assert_eq!(subjects.len(), 30, "{subjects:?}");
    assert_eq!(distinct.len(), 30, "no duplicates: {subjects:?}");
    assert_eq!(mails.len(), 30);
    assert_eq!(db.queue_len(), 0);

    // A sender that finds the lock taken says so, sends nothing, and exits 0.
    queue_mails(&db, 1);
    let mut holder = db.client();
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&manage::store::MAIL_SENDER_LOCK],
        )
        .unwrap();
    let run = db.manage().config(&config).arg("send_queued_mail").ok();
    assert!(
        run.stdout.contains("Another sender is at work"),
        "{}",
        run.stdout
    );
    assert_eq!(db.queue_len(), 1);
    drop(holder);
}

#[test]
fn starttls_with_a_private_ca_and_a_login_and_the_password_is_never_printed() {
    let cert = TestCert::new();
    let server = SmtpServer::starttls(&cert);
    let url = format!(
        "smtp_url = \"smtp://{USER}:{PASSWORD}@127.0.0.1:{}?tls=starttls\"",
        server.port
    );
    let trusted = config(
        &format!("{url}\nsmtp_ca_file = \"{}\"", cert.ca_file.display()),
        "",
    );
    let untrusted = config(&url, "");
    let db = TestDb::new();
    queue_mails(&db, 1);

    // Without the CA the certificate is refused, and nothing shows the password.
    let run = db.manage().config(&untrusted).arg("send_queued_mail").run();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    let error = db.value("SELECT last_error FROM manage.mail_queue");
    assert!(!error.contains(PASSWORD), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(server.received().is_empty());

    let check = db.manage().config(&trusted).arg("check").ok();
    assert!(
        check.stdout.contains(&format!(
            "ok: mail transport SMTP smtp://{USER}:***@127.0.0.1:{}?tls=starttls (STARTTLS required, trusting the CA in",
            server.port
        )),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains(PASSWORD) && !check.stderr.contains(PASSWORD));

    let run = db.manage().config(&trusted).arg("send_queued_mail").run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    let mails = server.wait_for(1);
    assert_eq!(mails[0].header("Subject").as_deref(), Some("mail 1"));

    // A wrong password: refused, and still not printed.
    let wrong = config(
        &format!(
            "smtp_url = \"smtp://{USER}:wrong-{PASSWORD}@127.0.0.1:{}?tls=starttls\"\nsmtp_ca_file = \"{}\"",
            server.port,
            cert.ca_file.display()
        ),
        "",
    );
    queue_mails(&db, 1);
    let run = db.manage().config(&wrong).arg("send_queued_mail").run();
    assert_eq!(run.code, 1);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    assert!(!db
        .value("SELECT last_error FROM manage.mail_queue")
        .contains(PASSWORD));
}

#[test]
fn implicit_tls_smtps_delivers() {
    let cert = TestCert::new();
    let server = SmtpServer::smtps(&cert);
    let config = config(
        &format!(
            "smtp_url = \"smtps://127.0.0.1:{}\"\nsmtp_ca_file = \"{}\"",
            server.port,
            cert.ca_file.display()
        ),
        "",
    );
    let db = TestDb::new();
    queue_mails(&db, 2);
    let run = db.manage().config(&config).arg("send_queued_mail").run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let mails = server.wait_for(2);
    assert_eq!(mails[0].header("Subject").as_deref(), Some("mail 1"));
    assert_eq!(mails[1].header("Subject").as_deref(), Some("mail 2"));
    assert_eq!(mails[0].body(), "body 1\n");
}

#[test]
fn a_description_with_cr_lf_cannot_add_a_header() {
    let server = SmtpServer::plain();
    let config = config(
        &smtp_url(server.port),
        "[jobs.evil]\ncommand = \"exit 1\"\ndescription = \"evil\\r\\nBcc: victim@example.com\\r\\nX-Injected: yes\"\ninterval = \"01:00:00\"\n",
    );
    let db = TestDb::new();
    db.run_once(&config, &["evil"]);
    // And straight into the queue, past compose: a subject and a header value
    // with line breaks.
    db.client()
        .batch_execute(&format!(
            "INSERT INTO manage.mail_queue (recipient, sender, subject, body, headers) VALUES \
             ('{RECIPIENT}', '{SENDER}', E'hi\\r\\nX-Injected: yes', E'body\\n', \
              '{{\"Auto-Submitted\": \"auto-generated\\r\\nX-Injected: yes\"}}')"
        ))
        .unwrap();
    db.manage().config(&config).arg("send_queued_mail").ok();
    let mails = server.wait_for(2);
    for mail in &mails {
        assert!(mail.header("X-Injected").is_none(), "{}", mail.raw);
        assert!(mail.header("Bcc").is_none(), "{}", mail.raw);
        assert_eq!(mail.to, [RECIPIENT]);
    }
    let subject = mails[0].header("Subject").unwrap();
    assert!(
        subject.starts_with("Scheduled job 'evil") && subject.contains("X-Injected: yes' failed"),
        "{subject}"
    );
}

#[test]
fn the_sendmail_transport_hands_the_message_to_the_program() {
    let db = TestDb::new();
    let script = db.home().join("fake-sendmail");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\ncat > \"$0.mail\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &script,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let config = config(&format!("sendmail = \"{}\"", script.display()), "");
    queue_mails(&db, 1);
    let check = db.manage().config(&config).arg("check").ok();
    assert!(
        check
            .stdout
            .contains(&format!("ok: mail transport sendmail {}", script.display())),
        "{}",
        check.stdout
    );
    db.manage().config(&config).arg("send_queued_mail").ok();
    let args = std::fs::read_to_string(db.home().join("fake-sendmail.args")).unwrap();
    assert_eq!(args, format!("-i\n-f\n{SENDER}\n--\n{RECIPIENT}\n"));
    let raw = std::fs::read_to_string(db.home().join("fake-sendmail.mail")).unwrap();
    assert!(raw.contains("Subject: mail 1\r\n"), "{raw}");
    assert!(raw.contains("Auto-Submitted: auto-generated\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nbody 1\r\n"), "{raw:?}");
    assert_eq!(db.queue_len(), 0);
}

#[test]
fn check_send_test_mail_reports_the_server_answer_or_the_problem() {
    let server = SmtpServer::plain();
    let db = TestDb::new();
    let good = config(&smtp_url(server.port), "");
    let run = db
        .manage()
        .config(&good)
        .args(["check", "--send-test-mail"])
        .ok();
    assert!(
        run.stdout.contains(&format!(
            "ok: test mail sent to {RECIPIENT} (server said: 250"
        )),
        "{}",
        run.stdout
    );
    let mails = server.wait_for(1);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("manage test mail")
    );
    assert_eq!(db.queue_len(), 0, "not through the queue");

    let down = config(&smtp_url(free_port()), "");
    let run = db
        .manage()
        .config(&down)
        .args(["check", "--send-test-mail"])
        .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains(&format!("problem: test mail to {RECIPIENT} not sent: ")),
        "{}",
        run.stdout
    );

    let no_recipient = format!("[notifications]\n{}\n", smtp_url(server.port));
    let run = db
        .manage()
        .config(&no_recipient)
        .args(["check", "--send-test-mail"])
        .run();
    assert_eq!(run.code, 1);
    assert!(run
        .stdout
        .contains("problem: cannot send a test mail: no recipient"));

    let no_transport = format!("[notifications]\nemail = \"{RECIPIENT}\"\n");
    let run = db
        .manage()
        .config(&no_transport)
        .args(["check", "--send-test-mail"])
        .run();
    assert_eq!(run.code, 1);
    assert!(run
        .stdout
        .contains("problem: cannot send a test mail: no mail transport"));
}

#[test]
fn mail_queue_json_has_exactly_the_promised_fields_oldest_first() {
    let db = TestDb::new();
    db.client()
        .batch_execute(&format!(
            "INSERT INTO manage.mail_queue (recipient, sender, subject, body, queued_at, attempts, last_error) VALUES \
             ('{RECIPIENT}', '{SENDER}', 'newer', 'b', '2026-07-01 10:00:00.250+00', 0, NULL), \
             ('{RECIPIENT}', '{SENDER}', 'older', 'b', '2026-01-15 12:00:00+00', 2, 'connection refused')"
        ))
        .unwrap();
    let json = db
        .manage()
        .env("MANAGE_TIMEZONE", "Europe/Stockholm")
        .args(["mail", "queue", "--json"])
        .json();
    let mails = json.as_array().unwrap();
    assert_eq!(mails.len(), 2);
    let keys: BTreeSet<&str> = mails[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "recipient",
            "subject",
            "queued_at",
            "attempts",
            "last_error"
        ])
    );
    assert_eq!(mails[0]["subject"], "older");
    assert_eq!(mails[0]["queued_at"], "2026-01-15T13:00:00.000+01:00");
    assert_eq!(mails[0]["attempts"], 2);
    assert_eq!(mails[0]["last_error"], "connection refused");
    assert!(mails[0]["id"].is_i64());
    assert_eq!(mails[1]["queued_at"], "2026-07-01T12:00:00.250+02:00");
    assert!(mails[1]["last_error"].is_null());
}

#[test]
fn a_bad_smtp_url_is_a_configuration_error_naming_the_key_without_the_password() {
    let db = TestDb::new();
    let run = db
        .manage()
        .config("[notifications]\nsmtp_url = \"ftp://x\"\n")
        .arg("check")
        .run();
    run.assert_bad_input(&[
        "notifications.smtp_url: \"ftp://x\" is not a valid SMTP URL: expected smtp://host[:port] or smtps://host[:port]",
    ]);

    let run = db
        .manage()
        .env(
            "SMTP_URL",
            "smtp://someone:hunter2xyz@mail.example.com:25?tls=bogus",
        )
        .arg("check")
        .run();
    run.assert_bad_input(&["SMTP_URL: ", "someone:***@mail.example.com"]);
    assert!(!run.stderr.contains("hunter2xyz") && !run.stdout.contains("hunter2xyz"));

    let run = db
        .manage()
        .config(
            "[notifications]\nsmtp_url = \"smtp://localhost\"\nsmtp_ca_file = \"missing.pem\"\n",
        )
        .arg("check")
        .run();
    run.assert_bad_input(&["notifications.smtp_ca_file: "]);
}

#[test]
fn without_a_transport_send_queued_mail_is_skipped_and_mail_waits() {
    let db = TestDb::new();
    let config = format!("[notifications]\nemail = \"{RECIPIENT}\"\n[jobs.bad]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n");
    let run = db.run_once(&config, &["bad"]);
    assert_eq!(run.code, 1);
    assert_eq!(db.queue_len(), 1, "queued for when a transport is set");
    assert!(job_runs(&db, "send_queued_mail").is_empty(), "skipped");
    assert!(
        run.stderr.contains("Skipping job send_queued_mail"),
        "{}",
        run.stderr
    );
}
