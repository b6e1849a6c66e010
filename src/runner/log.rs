//! The runner's log: one line per event on stderr, in one of two renderings.
//!
//! Every call site builds one [`Entry`] — a level, the human text, and the
//! job, run id, state and duration where the event has them — and [`Log`]
//! renders it: the human line (`Job x succeeded in 1.2 s`, with a timestamp
//! unless systemd's journal is the reader, `JOURNAL_STREAM` set, which stamps
//! lines itself; no colour either way), or one JSON object per line for log
//! pipelines (`--log-format json`, §15). One set of log calls, two renderings:
//! the JSON `msg` is the human line's text, so the two never say different
//! things, and a new log line is in both without anyone remembering to.

use chrono_tz::Tz;

/// How the log is written: `--log-format` / `MANAGE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// One line of text per event.
    #[default]
    Human,
    /// One JSON object per event: `ts`, `level`, `msg`, and `job`, `run_id`,
    /// `state`, `duration_seconds` where they apply.
    Json,
}

/// How much an event matters. `Error` is the runner's own trouble (the
/// database unreachable, a result it cannot record), so that alerting on
/// `level=error` watches the scheduler; a job that fails is `Warn` — its
/// run's state says how it ended, and its notification goes out anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// One event: what the human line says, and the fields a program wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    level: Level,
    msg: String,
    job: Option<String>,
    run_id: Option<i64>,
    state: Option<&'static str>,
    duration_seconds: Option<f64>,
}

impl Entry {
    fn new(level: Level, msg: impl Into<String>) -> Entry {
        Entry {
            level,
            msg: msg.into(),
            job: None,
            run_id: None,
            state: None,
            duration_seconds: None,
        }
    }

    pub fn info(msg: impl Into<String>) -> Entry {
        Entry::new(Level::Info, msg)
    }

    pub fn warn(msg: impl Into<String>) -> Entry {
        Entry::new(Level::Warn, msg)
    }

    pub fn error(msg: impl Into<String>) -> Entry {
        Entry::new(Level::Error, msg)
    }

    pub fn job(mut self, name: &str) -> Entry {
        self.job = Some(name.to_string());
        self
    }

    pub fn run_id(mut self, id: i64) -> Entry {
        self.run_id = Some(id);
        self
    }

    /// A run state (`running`, `succeeded`, `interrupted`, …), or `skipped`
    /// for a run whose should_run check said no.
    pub fn state(mut self, state: &'static str) -> Entry {
        self.state = Some(state);
        self
    }

    pub fn duration(mut self, seconds: f64) -> Entry {
        self.duration_seconds = Some(seconds);
        self
    }

    /// The JSON rendering at `ts`: the fields in a fixed order, absent ones
    /// left out; the duration to the millisecond.
    fn json(&self, ts: String) -> String {
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), ts.into());
        object.insert("level".into(), self.level.as_str().into());
        object.insert("msg".into(), self.msg.clone().into());
        if let Some(job) = &self.job {
            object.insert("job".into(), job.clone().into());
        }
        if let Some(id) = self.run_id {
            object.insert("run_id".into(), id.into());
        }
        if let Some(state) = self.state {
            object.insert("state".into(), state.into());
        }
        if let Some(secs) = self.duration_seconds {
            object.insert(
                "duration_seconds".into(),
                ((secs * 1000.0).round() / 1000.0).into(),
            );
        }
        serde_json::Value::Object(object).to_string()
    }
}

/// Whether this process's stderr is a JSON log, and in which zone its
/// timestamps are: set by a `--log-format json` runner as soon as its
/// arguments are parsed, so that the lines written outside the runner's
/// [`Log`] — the root warning, the final error, a panic — are JSON too
/// (§15: every stderr line of a JSON runner is JSON).
static STDERR_JSON: std::sync::Mutex<Option<Tz>> = std::sync::Mutex::new(None);

/// From now on, [`stderr_line`] writes JSON objects with timestamps in `tz`.
pub fn set_stderr_json(tz: Tz) {
    if let Ok(mut slot) = STDERR_JSON.lock() {
        *slot = Some(tz);
    }
}

/// A line for stderr outside the runner's loop: `prefix: text` (`error: …`,
/// `warning: …`) normally, a JSON entry of `level` with `text` as its `msg`
/// when the process is a JSON runner.
pub fn stderr_line(level: Level, text: &str) -> String {
    // A poisoned lock only means a panic while it was held: its value is fine.
    let json = *STDERR_JSON.lock().unwrap_or_else(|p| p.into_inner());
    match json {
        Some(tz) => Log {
            format: Format::Json,
            timestamps: true,
            tz,
        }
        .render(&Entry::new(level, text), chrono::Utc::now()),
        None => {
            let prefix = match level {
                Level::Info => return text.to_string(),
                Level::Warn => "warning",
                Level::Error => "error",
            };
            format!("{prefix}: {text}")
        }
    }
}

#[derive(Debug, Clone)]
pub struct Log {
    format: Format,
    /// Whether human lines start with a timestamp (not under the journal).
    timestamps: bool,
    tz: Tz,
}

impl Log {
    pub fn from_env(tz: Tz, format: Format) -> Self {
        Log {
            format,
            timestamps: std::env::var_os("JOURNAL_STREAM").is_none_or(|v| v.is_empty()),
            tz,
        }
    }

    /// Write one event (one `eprintln!`, so lines from several threads never
    /// interleave).
    pub fn event(&self, entry: Entry) {
        eprintln!("{}", self.render(&entry, chrono::Utc::now()));
    }

    pub fn info(&self, msg: impl Into<String>) {
        self.event(Entry::info(msg));
    }

    pub fn warn(&self, msg: impl Into<String>) {
        self.event(Entry::warn(msg));
    }

    pub fn error(&self, msg: impl Into<String>) {
        self.event(Entry::error(msg));
    }

    fn render(&self, entry: &Entry, now: chrono::DateTime<chrono::Utc>) -> String {
        match self.format {
            Format::Json => entry.json(crate::schedule::json_instant(now, self.tz)),
            Format::Human if self.timestamps => format!(
                "{} {}",
                crate::schedule::human_instant(now, self.tz),
                entry.msg
            ),
            Format::Human => entry.msg.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(format: Format, timestamps: bool) -> Log {
        Log {
            format,
            timestamps,
            tz: chrono_tz::Europe::Berlin,
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-11-27T15:52:17.123456Z".parse().unwrap()
    }

    #[test]
    fn the_human_rendering_is_the_message_with_or_without_a_timestamp() {
        let entry = Entry::info("Job x succeeded in 1.2 s")
            .job("x")
            .run_id(7)
            .state("succeeded")
            .duration(1.2);
        assert_eq!(
            log(Format::Human, true).render(&entry, now()),
            "2026-11-27 16:52:17 CET Job x succeeded in 1.2 s"
        );
        assert_eq!(
            log(Format::Human, false).render(&entry, now()),
            "Job x succeeded in 1.2 s"
        );
    }

    #[test]
    fn the_json_rendering_has_the_fields_that_apply_in_order() {
        let entry = Entry::info("Job x succeeded in 1.2 s")
            .job("x")
            .run_id(7)
            .state("succeeded")
            .duration(1.2346);
        // The journal changes only the human rendering's timestamps.
        for timestamps in [true, false] {
            assert_eq!(
                log(Format::Json, timestamps).render(&entry, now()),
                r#"{"ts":"2026-11-27T16:52:17.123+01:00","level":"info","msg":"Job x succeeded in 1.2 s","job":"x","run_id":7,"state":"succeeded","duration_seconds":1.235}"#
            );
        }
        assert_eq!(
            log(Format::Json, true).render(&Entry::error("Lost the \"database\""), now()),
            r#"{"ts":"2026-11-27T16:52:17.123+01:00","level":"error","msg":"Lost the \"database\""}"#
        );
    }
}
