//! How `manage` shows things to a person and to a program: human times in the
//! configured zone (`2026-11-27 03:07:00 CET`), RFC 3339 with milliseconds for
//! JSON, durations with one decimal, and tables without escape codes unless a
//! terminal without `NO_COLOR` is reading.

use std::borrow::Cow;
use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use comfy_table::{Cell, Color, ContentArrangement, Table};

/// `YYYY-MM-DD HH:MM:SS ZONE` in the configured zone.
pub fn human_time(instant: DateTime<Utc>, tz: Tz) -> String {
    instant
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub fn human_time_opt(instant: Option<DateTime<Utc>>, tz: Tz, none: &str) -> String {
    instant.map_or_else(|| none.to_string(), |i| human_time(i, tz))
}

/// RFC 3339 with milliseconds and the zone's offset at that instant.
pub fn json_time(instant: DateTime<Utc>, tz: Tz) -> String {
    crate::schedule::json_instant(instant, tz)
}

pub fn json_time_opt(instant: Option<DateTime<Utc>>, tz: Tz) -> serde_json::Value {
    instant.map_or(serde_json::Value::Null, |i| json_time(i, tz).into())
}

/// A job's `alert_after` as people read it, with `(override)` when the
/// operator set it.
pub fn alert_after(job: &crate::job::Job) -> String {
    let n = job.alert_after();
    let what = if n == 1 {
        "every failure is mailed".to_string()
    } else {
        format!("failures are mailed from the {} in a row on", ordinal(n))
    };
    let origin = if job.override_alert_after.is_some() {
        " (override)"
    } else {
        ""
    };
    format!("{n}{origin}: {what}")
}

/// 1st, 2nd, 3rd, 4th, 11th, 21st…
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What an SQL job's run commits (§18); None for other jobs.
pub fn transaction(job: &crate::job::Job) -> Option<&'static str> {
    match job.kind() {
        crate::job::Kind::Sql if job.sql_autocommit() => Some("none (sql_autocommit)"),
        crate::job::Kind::Sql => Some("one per run (nothing of a failed run is committed)"),
        _ => None,
    }
}

/// A job's retries as people read them: `none`, or `3, first after 00:30
/// (doubling)`, with `(override)` when the operator set them.
pub fn retries(job: &crate::job::Job) -> String {
    let origin = if job.override_retries.is_some() || job.override_retry_delay_seconds.is_some() {
        " (override)"
    } else {
        ""
    };
    match job.retries() {
        0 => format!("none{origin}"),
        n => format!(
            "{n}, first after {} (doubling){origin}",
            crate::schedule::format_duration(job.retry_delay_seconds())
        ),
    }
}

/// Seconds with one decimal: `1.2 s`.
pub fn seconds(secs: f64) -> String {
    format!("{secs:.1} s")
}

/// "in 4 min", "3 h ago": how far `instant` is from `now`, roughly.
pub fn relative(instant: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = (instant - now).num_seconds();
    let span = delta.unsigned_abs();
    if span == 0 {
        return "now".into();
    }
    let text = if span < 60 {
        format!("{span} s")
    } else if span < 3600 {
        format!("{} min", span / 60)
    } else if span < 48 * 3600 {
        let (h, m) = (span / 3600, span % 3600 / 60);
        if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else {
        format!("{} days", span / 86400)
    };
    if delta >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Control characters other than newline and tab written as `\xNN` (C1
/// controls as `\u{NN}`), so that what a job printed cannot move the
/// cursor, clear the screen, retitle the window or hide text from the
/// operator reading it. Everything else, backslashes included, is left as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    let is_escaped = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(is_escaped) {
        return Cow::Borrowed(text);
    }
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !is_escaped(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:02x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// A job's output (or a line of it) as this invocation prints it: escaped
/// (see [`escape_controls`]) when a terminal reads stdout, exact when a
/// program does — a pipe, a file, `--json` — which must get what the job wrote.
pub fn job_output(text: &str) -> Cow<'_, str> {
    if std::io::stdout().is_terminal() {
        escape_controls(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether to colour: a terminal reads stdout and `NO_COLOR` is not set.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// comfy-table presets: only the line under the header is drawn.
const PLAIN_ASCII: &str = "     -             ";
const PLAIN_UTF8: &str = "     ─             ";

/// A table with the house look; plain ASCII off a terminal.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    // No borders, one line under the header: easy to read, and easy to grep
    // and cut when a script reads it.
    if std::io::stdout().is_terminal() {
        table.load_preset(PLAIN_UTF8);
        table.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        table.load_preset(PLAIN_ASCII);
        table.set_content_arrangement(ContentArrangement::Disabled);
    }
    table.set_header(header.iter().map(Cell::new));
    table
}

/// A cell that is red on a colour terminal (failures), plain otherwise.
pub fn alert_cell(text: impl ToString, alert: bool) -> Cell {
    let cell = Cell::new(text);
    if alert && colour() {
        cell.fg(Color::Red)
    } else {
        cell
    }
}

/// Print a table on stdout without the padding at the end of each line.
pub fn print_table(table: &Table) {
    use std::io::Write as _;
    let text = table.to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    // One write, not one per line (stdout is line-buffered).
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

/// Print pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    write_json(value)
}

/// Serialise anything as pretty JSON straight into a buffered stdout.
pub fn write_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn human_and_json_times_use_the_configured_zone() {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 2, 7, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let tz = chrono_tz::Europe::Stockholm;
        assert_eq!(human_time(t, tz), "2026-11-27 03:07:00 CET");
        assert_eq!(json_time(t, tz), "2026-11-27T03:07:00.123+01:00");
        assert_eq!(json_time(t, Tz::UTC), "2026-11-27T02:07:00.123+00:00");
    }

    #[test]
    fn control_characters_but_newline_and_tab_are_escaped_for_a_terminal() {
        assert_eq!(
            escape_controls("\x1b[31mred\x1b[0m\x07\r\nnext\tline\n"),
            "\\x1b[31mred\\x1b[0m\\x07\\x0d\nnext\tline\n"
        );
        assert_eq!(escape_controls("\0 \x7f \u{9b}2J"), "\\x00 \\x7f \\u{9b}2J");
        // Plain text, other scripts and backslashes are untouched, and not copied.
        let plain = "ok: C:\\temp → 3 files, naïve\n";
        assert!(matches!(escape_controls(plain), Cow::Borrowed(p) if p == plain));
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            relative(now + chrono::Duration::seconds(240), now),
            "in 4 min"
        );
        assert_eq!(
            relative(now - chrono::Duration::seconds(3 * 3600), now),
            "3 h ago"
        );
        assert_eq!(
            relative(now + chrono::Duration::seconds(5400), now),
            "in 1 h 30 min"
        );
        assert_eq!(seconds(1.234), "1.2 s");
    }
}
