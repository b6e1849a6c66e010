//! Webhooks and recipients per job (§20) end to end: jobs run by the real
//! runner, their alerts queued in the mail queue and posted by
//! `send_queued_mail` to a real HTTP receiver (tests/receiver.rs); the
//! signature checked independently; retries, exactly-once with two senders,
//! a job's `notify` replacing the global address (tests/smtp.rs), and
//! `manage check --send-test-mail`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::TestDb;
use crate::receiver::{hmac_hex, Answer, Receiver};
use crate::smtp::{free_port, SmtpServer};

const SECRET: &str = "hook-s3cret";

/// `[notifications]` with webhook `ops` (JSON, signed) at `url`, then `rest`.
fn config(url: &str, rest: &str) -> String {
    format!("[notifications.webhooks.ops]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{rest}")
}

/// Queue `count` webhook alerts for `ops` directly: `alert 1`, `alert 2`, …
fn queue_alerts(db: &TestDb, count: u32) {
    db.client()
        .batch_execute(&format!(
            "INSERT INTO manage.mail_queue (recipient, sender, subject, body, queued_at) \
             SELECT 'webhook:ops', '', 'alert ' || i, \
                    json_build_object('event', 'failed', 'text', 'alert ' || i, 'output', '')::text, \
                    now() - interval '1 hour' + i * interval '1 second' \
             FROM generate_series(1, {count}) i"
        ))
        .unwrap();
}

#[test]
fn a_failing_job_posts_the_payload_of_the_spec_signed_with_the_secret() {
    let receiver = Receiver::new();
    let config = config(
        &receiver.url("/hooks/ops"),
        "[jobs.bad]\ncommand = \"echo oops; exit 3\"\ndescription = \"Bad job\"\n\
         interval = \"01:00:00\"\nnotify = [\"webhook:ops\"]\n",
    );
    let db = TestDb::new();
    let run = db.run_once(&config, &["bad"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let requests = receiver.wait_for(1);
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(db.queue_len(), 0, "a delivered alert leaves the queue");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/ops");
    assert_eq!(
        request.header("Content-Type").as_deref(),
        Some("application/json")
    );
    let body = String::from_utf8(request.body.clone()).unwrap();
    let signature = request.header("X-Manage-Signature").unwrap();
    eprintln!("---- the payload as received ----\n{body}\nX-Manage-Signature: {signature}");
    assert_eq!(
        signature,
        format!("sha256={}", hmac_hex(SECRET, &request.body)),
        "the HMAC-SHA256 of the exact body bytes"
    );

    let payload = request.json();
    let keys: Vec<&str> = payload
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "event",
            "job",
            "description",
            "host",
            "run_id",
            "state",
            "started_at",
            "runtime_seconds",
            "output",
            "text"
        ]
    );
    let row = &db.query_strings(
        "SELECT id::text, host, output, runtime_seconds::text FROM manage.runs WHERE job = 'bad'",
    )[0];
    assert_eq!(payload["event"], "failed");
    assert_eq!(payload["job"], "bad");
    assert_eq!(payload["description"], "Bad job");
    assert_eq!(payload["host"], row[1].as_str());
    assert_eq!(payload["run_id"].as_i64().unwrap().to_string(), row[0]);
    assert_eq!(payload["state"], "failed");
    let started = chrono::DateTime::parse_from_rfc3339(payload["started_at"].as_str().unwrap());
    assert!(started.is_ok(), "{payload}");
    let runtime: f64 = row[3].parse().unwrap();
    assert!((payload["runtime_seconds"].as_f64().unwrap() - runtime).abs() < 1e-6);
    assert_eq!(payload["output"], row[2].as_str());
    assert!(row[2].contains("oops"));
    assert_eq!(payload["text"], "Scheduled job 'Bad job' failed");
}

#[test]
fn a_slack_webhook_gets_the_subject_and_twenty_output_lines_in_a_code_block() {
    let receiver = Receiver::new();
    let config = format!(
        "[notifications.webhooks.chat]\nurl = \"{}\"\nformat = \"slack\"\n\
         [jobs.noisy]\ncommand = \"seq 1 30; exit 1\"\ninterval = \"01:00:00\"\nnotify = [\"webhook:chat\"]\n",
        receiver.url("/slack")
    );
    let db = TestDb::new();
    db.run_once(&config, &["noisy"]);
    let requests = receiver.wait_for(1);
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].header("X-Manage-Signature").is_none(),
        "no secret, no signature"
    );
    let body = requests[0].json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let text = body["text"].as_str().unwrap();
    let output = db.value("SELECT output FROM manage.runs WHERE job = 'noisy'");
    let first: Vec<&str> = output.lines().take(20).collect();
    assert_eq!(
        text,
        format!(
            "Scheduled job 'noisy' failed\n```\n{}\n```",
            first.join("\n")
        )
    );
    assert!(
        text.contains("\n19\n") && !text.contains("\n25\n"),
        "{text}"
    );
}

#[test]
fn a_refused_delivery_stays_queued_and_goes_once_when_the_receiver_is_back() {
    let receiver = Receiver::answering(Answer::Status(500));
    let config = config(
        &receiver.url("/"),
        "[jobs.bad]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\nnotify = [\"webhook:ops\"]\n",
    );
    let db = TestDb::new();
    db.run_once(&config, &["bad"]);
    assert_eq!(receiver.wait_for(1).len(), 1);
    assert_eq!(db.queue_len(), 1, "a 500 is not a delivery");
    let queue = db
        .manage()
        .config(&config)
        .args(["mail", "queue", "--json"])
        .json();
    let row = &queue.as_array().unwrap()[0];
    assert_eq!(row["recipient"], "webhook:ops");
    assert_eq!(row["subject"], "Scheduled job 'bad' failed");
    assert_eq!(row["attempts"], 1);
    assert!(
        row["last_error"].as_str().unwrap().contains("answered 500"),
        "{queue}"
    );
    let table = db
        .manage()
        .config(&config)
        .args(["mail", "queue"])
        .ok()
        .stdout;
    assert!(table.contains("webhook:ops"), "{table}");
    assert!(
        !db.value("SELECT body FROM manage.mail_queue")
            .contains(SECRET),
        "the secret is not stored"
    );

    receiver.answer(Answer::Status(204));
    let sent = db
        .manage()
        .config(&config)
        .arg("send_queued_mail")
        .ok()
        .stdout;
    assert!(sent.contains("Sent 1 of 1 queued mails"), "{sent}");
    assert_eq!(db.queue_len(), 0);
    let again = db
        .manage()
        .config(&config)
        .arg("send_queued_mail")
        .ok()
        .stdout;
    assert!(again.contains("No mail is queued"), "{again}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "once refused, once delivered");
    assert_eq!(requests[0].body, requests[1].body, "the same payload");
}

#[test]
fn a_receiver_that_does_not_answer_in_ten_seconds_is_retried_later() {
    let receiver = Receiver::answering(Answer::Silence);
    let config = config(&receiver.url("/"), "");
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    queue_alerts(&db, 2);
    let started = Instant::now();
    let run = db.manage().config(&config).arg("send_queued_mail").run();
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert_eq!(
        receiver.requests().len(),
        1,
        "the second waits for the next pass"
    );
    let left = db.query_strings("SELECT attempts, last_error FROM manage.mail_queue ORDER BY id");
    assert_eq!(left.len(), 2);
    for row in &left {
        assert_eq!(row[0], "1");
        assert!(row[1].starts_with("http://127.0.0.1:"), "{left:?}");
    }
    receiver.answer(Answer::Status(200));
    db.manage().config(&config).arg("send_queued_mail").ok();
    assert_eq!(db.queue_len(), 0);
}

#[test]
fn two_senders_at_once_never_deliver_an_alert_twice() {
    let receiver = Receiver::new();
    let config = config(&receiver.url("/"), "");
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    queue_alerts(&db, 30);
    let mut first = db.manage().config(&config).arg("send_queued_mail").spawn();
    let mut second = db.manage().config(&config).arg("send_queued_mail").spawn();
    assert_eq!(first.wait_exit(Duration::from_secs(60)), Some(0));
    assert_eq!(second.wait_exit(Duration::from_secs(60)), Some(0));
    db.manage().config(&config).arg("send_queued_mail").ok();
    receiver.wait_for(30);
    std::thread::sleep(Duration::from_millis(300));
    let texts: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_string())
        .collect();
    let distinct: BTreeSet<&String> = texts.iter().collect();
    assert_eq!(texts.len(), 30, "{texts:?}");
    assert_eq!(distinct.len(), 30, "no duplicates: {texts:?}");
    assert_eq!(db.queue_len(), 0);
}

#[test]
fn a_jobs_notify_replaces_the_global_address() {
    let server = SmtpServer::plain();
    let receiver = Receiver::new();
    let config = config(
        &receiver.url("/"),
        &format!(
            "[notifications]\nemail = \"global@example.com\"\nsender = \"jobs@example.com\"\n\
             smtp_url = \"smtp://127.0.0.1:{}\"\n\
             [jobs.own]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n\
             notify = [\"team@example.com\", \"webhook:ops\"]\n\
             [jobs.plain]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n",
            server.port
        ),
    );
    // [notifications] after [notifications.webhooks.ops] is the same table.
    let db = TestDb::new();
    db.run_once(&config, &["own", "plain"]);
    let mails = server.wait_for(2);
    std::thread::sleep(Duration::from_millis(300));
    let mut got: Vec<(String, String)> = server
        .received()
        .iter()
        .map(|m| (m.to.join(","), m.header("Subject").unwrap()))
        .collect();
    got.sort();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        got,
        [
            (
                "global@example.com".to_string(),
                "Scheduled job 'plain' failed".to_string()
            ),
            (
                "team@example.com".to_string(),
                "Scheduled job 'own' failed".to_string()
            ),
        ],
        "the global address got nothing for 'own'"
    );
    let hooks = receiver.wait_for(1);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].json()["job"], "own");

    let show = db
        .manage()
        .config(&config)
        .args(["jobs", "show", "own"])
        .ok()
        .stdout;
    assert!(
        show.contains("Notify:") && show.contains("team@example.com, webhook:ops"),
        "{show}"
    );
    let json = db.job_json(&config, "plain");
    assert_eq!(json["notify"], serde_json::json!(["global@example.com"]));

    // The operator's override, and its refusal of an unknown webhook.
    db.manage()
        .config(&config)
        .args(["jobs", "configure", "plain", "--notify", "webhook:ops"])
        .ok();
    let json = db.job_json(&config, "plain");
    assert_eq!(json["notify"], serde_json::json!(["webhook:ops"]));
    db.manage()
        .config(&config)
        .args(["jobs", "configure", "plain", "--notify", "webhook:chat"])
        .run()
        .assert_bad_input(&["--notify", "no webhook \"chat\"", "ops"]);
    db.manage()
        .config(&config)
        .args(["jobs", "configure", "plain", "--clear-notify"])
        .ok();
    let json = db.job_json(&config, "plain");
    assert_eq!(json["notify"], serde_json::json!(["global@example.com"]));
}

#[test]
fn check_send_test_mail_posts_a_test_event_to_every_webhook() {
    let receiver = Receiver::new();
    let config = format!(
        "[notifications.webhooks.good]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\
         [notifications.webhooks.gone]\nurl = \"http://127.0.0.1:{}/\"\n",
        receiver.url("/test"),
        free_port()
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let run = db
        .manage()
        .config(&config)
        .args(["check", "--send-test-mail"])
        .run();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("Webhook good: answered 200"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Webhook gone: failed: http://127.0.0.1:"),
        "{}",
        run.stdout
    );
    let requests = receiver.wait_for(1);
    assert_eq!(requests.len(), 1);
    let payload = requests[0].json();
    assert_eq!(payload["event"], "test");
    assert!(payload["job"].is_null() && payload["run_id"].is_null());
    assert_eq!(
        requests[0].header("X-Manage-Signature").unwrap(),
        format!("sha256={}", hmac_hex(SECRET, &requests[0].body))
    );
    assert_eq!(db.queue_len(), 0, "not through the queue");

    let only_good = format!(
        "[notifications.webhooks.good]\nurl = \"{}\"\n",
        receiver.url("/test")
    );
    let run = db
        .manage()
        .config(&only_good)
        .args(["check", "--send-test-mail"])
        .ok();
    assert!(
        run.stdout.contains("Webhook good: answered 200"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_mail_server_that_is_down_holds_up_no_webhook() {
    let receiver = Receiver::new();
    let config = config(
        &receiver.url("/"),
        &format!(
            "[notifications]\nemail = \"ops@example.com\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\n\
             [jobs.bad]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n\
             notify = [\"ops@example.com\", \"webhook:ops\"]\n",
            free_port()
        ),
    );
    let db = TestDb::new();
    db.run_once(&config, &["bad"]);
    assert_eq!(receiver.wait_for(1).len(), 1);
    let left = db.query_strings("SELECT recipient, attempts FROM manage.mail_queue");
    assert_eq!(left, [["ops@example.com", "1"]], "the mail waits alone");
}
