//! Composing notification mails (delivery is `send_queued_mail`'s).
//!
//! Kept pure: the runner's record transaction queues what this returns, so
//! the subject, body and headers of §6 are decided in one place.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// What happened to a run, as far as a mail is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
    /// The job could not be started and has been disabled.
    InternalError,
}

/// A mail ready for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
}

/// The facts a notification reports.
pub struct RunFacts<'a> {
    pub job: &'a str,
    pub description: &'a str,
    pub host: &'a str,
    pub started_at: DateTime<Utc>,
    pub runtime_seconds: f64,
    pub state: &'a str,
    pub output: &'a str,
}

/// Headers that keep vacation responders and the like from answering.
pub fn auto_headers() -> Vec<(String, String)> {
    vec![
        ("Auto-Submitted".into(), "auto-generated".into()),
        ("X-Auto-Response-Suppress".into(), "All".into()),
    ]
}

/// A header value on one line: CR and LF (and other controls) cannot start a
/// new header, whatever a job's description contains.
pub fn header_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Whether a run of this outcome is mailed at all.
pub fn wanted(outcome: Outcome, notify_on_success: bool, output: &str) -> bool {
    match outcome {
        Outcome::Succeeded => notify_on_success && !output.trim().is_empty(),
        _ => true,
    }
}

pub fn compose(outcome: Outcome, facts: &RunFacts, tz: Tz) -> Mail {
    let description = header_safe(facts.description);
    let subject = match outcome {
        Outcome::Succeeded => format!("Scheduled job '{description}' completed"),
        Outcome::Failed | Outcome::TimedOut => format!("Scheduled job '{description}' failed"),
        Outcome::Interrupted => format!("Scheduled job '{description}' was interrupted"),
        Outcome::InternalError => "Exception running scheduled job".to_string(),
    };
    let output = if facts.output.is_empty() {
        "(no output)"
    } else {
        facts.output.trim_end_matches('\n')
    };
    let body = format!(
        "{output}\n\nJob: {} ({})\nHost: {}\nStarted: {}\nRuntime: {:.1} s\nState: {}\n",
        facts.job,
        facts.description,
        facts.host,
        crate::schedule::human_instant(facts.started_at, tz),
        facts.runtime_seconds,
        facts.state,
    );
    Mail {
        subject,
        body,
        headers: auto_headers(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn facts(output: &str) -> RunFacts<'_> {
        RunFacts {
            job: "backup",
            description: "Nightly backup",
            host: "db1",
            started_at: Utc.with_ymd_and_hms(2026, 11, 27, 2, 7, 0).unwrap(),
            runtime_seconds: 1.25,
            state: "failed",
            output,
        }
    }

    #[test]
    fn a_failure_mail_has_the_subject_body_and_headers_of_the_spec() {
        let mail = compose(
            Outcome::Failed,
            &facts("Exit code 3\nboom\n"),
            chrono_tz::Europe::Stockholm,
        );
        assert_eq!(mail.subject, "Scheduled job 'Nightly backup' failed");
        assert_eq!(
            mail.body,
            "Exit code 3\nboom\n\nJob: backup (Nightly backup)\nHost: db1\nStarted: 2026-11-27 03:07:00 CET\nRuntime: 1.2 s\nState: failed\n"
        );
        assert_eq!(mail.headers, auto_headers());
    }

    #[test]
    fn subjects_for_every_outcome() {
        let tz = Tz::UTC;
        assert_eq!(
            compose(Outcome::Succeeded, &facts("x"), tz).subject,
            "Scheduled job 'Nightly backup' completed"
        );
        assert_eq!(
            compose(Outcome::Interrupted, &facts("x"), tz).subject,
            "Scheduled job 'Nightly backup' was interrupted"
        );
        assert_eq!(
            compose(Outcome::InternalError, &facts("x"), tz).subject,
            "Exception running scheduled job"
        );
        assert!(compose(Outcome::Failed, &facts(""), tz)
            .body
            .starts_with("(no output)\n\nJob: "));
    }

    #[test]
    fn success_is_mailed_only_with_notify_and_output() {
        assert!(wanted(Outcome::Succeeded, true, "hello"));
        assert!(!wanted(Outcome::Succeeded, true, ""));
        assert!(!wanted(Outcome::Succeeded, false, "hello"));
        assert!(wanted(Outcome::Failed, false, ""));
    }

    #[test]
    fn a_description_with_newlines_cannot_add_a_header() {
        let mut f = facts("x");
        f.description = "evil\r\nBcc: victim@example.com";
        let mail = compose(Outcome::Failed, &f, Tz::UTC);
        assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
    }
}
