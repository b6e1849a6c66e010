//! How the command line shows things to a person and to a program: tables
//! without escape codes unless a terminal without `NO_COLOR` is reading, a
//! job's output escaped for a terminal, and pretty JSON on stdout. The times
//! and words it shares with the web page are in `crate::view::text`.

use std::borrow::Cow;
use std::io::IsTerminal;

use comfy_table::{Cell, Color, ContentArrangement, Table};

// Re-exported so that the commands keep calling `render::human_time` beside
// `render::table`: one name for everything the command line shows.
pub use crate::view::text::{
    alert_after, chain, expect_success_within, human_time, human_time_opt, insert_extra_runs,
    jitter, json_time, kind, next_run, notify, notify_list, overlap, relative, retries, runs_on,
    seconds, transaction, warn_after,
};

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
        table.set_width(terminal_width(
            terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| w.0),
            std::env::var("COLUMNS").ok().as_deref(),
        ));
    } else {
        table.load_preset(PLAIN_ASCII);
        table.set_content_arrangement(ContentArrangement::Disabled);
    }
    table.set_header(header.iter().map(Cell::new));
    table
}

/// The width tables are fitted to on a terminal: the terminal's own, when
/// it reports one (a pseudo-terminal may say 0 columns: `script`, some CI
/// and container ttys), else `COLUMNS`, else 80 (§18).
fn terminal_width(reported: Option<u16>, columns: Option<&str>) -> u16 {
    reported
        .filter(|&w| w > 0)
        .or_else(|| {
            columns
                .and_then(|c| c.trim().parse::<u16>().ok())
                .filter(|&w| w > 0)
        })
        .unwrap_or(80)
}

/// No column narrower than its longest word (header included): a narrow
/// terminal wraps a table between words, never one letter a line.
fn keep_words_whole(table: &mut Table) {
    use unicode_width::UnicodeWidthStr as _;
    let mut longest: Vec<usize> = Vec::new();
    let rows = table.header().into_iter().chain(table.row_iter());
    for row in rows {
        for (i, cell) in row.cell_iter().enumerate() {
            let word = cell
                .content()
                .split_whitespace()
                .map(|w| w.width())
                .max()
                .unwrap_or(0);
            if longest.len() <= i {
                longest.resize(i + 1, 0);
            }
            longest[i] = longest[i].max(word);
        }
    }
    for (column, width) in table.column_iter_mut().zip(longest) {
        // comfy-table 7 counts a lower boundary with the cell padding (one
        // space each side) although the docs say content.
        let width = u16::try_from(width + 2).unwrap_or(u16::MAX);
        column.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
            comfy_table::Width::Fixed(width),
        ));
    }
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
    let mut table = table.clone();
    if table.width().is_some() {
        keep_words_whole(&mut table);
    }
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
}
#[cfg(test)]
mod width_tests {
    use super::*;

    #[test]
    fn an_unknown_width_is_columns_else_eighty() {
        assert_eq!(terminal_width(Some(132), Some("100")), 132);
        assert_eq!(terminal_width(Some(0), Some("100")), 100);
        assert_eq!(terminal_width(None, Some(" 90 ")), 90);
        assert_eq!(terminal_width(Some(0), Some("0")), 80);
        assert_eq!(terminal_width(Some(0), Some("wide")), 80);
        assert_eq!(terminal_width(None, None), 80);
    }

    #[test]
    fn a_narrow_table_wraps_between_words() {
        let mut table = Table::new();
        table.load_preset(PLAIN_UTF8);
        table.set_content_arrangement(ContentArrangement::Dynamic);
        table.set_width(72);
        table.set_header([
            "Id", "Started", "Job", "State", "Attempt", "Runtime", "Output",
        ]);
        table.add_row([
            "2",
            "2026-11-01 10:01:00 UTC",
            "poll",
            "succeeded",
            "1",
            "1.2 s",
            "first line of a long output",
        ]);
        keep_words_whole(&mut table);
        let text = table.to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        for word in [
            "Attempt",
            "Runtime",
            "2026-11-01",
            "10:01:00",
            "succeeded",
            "output",
        ] {
            assert!(words.contains(&word), "{word} broken:\n{text}");
        }
        assert!(text.lines().all(|l| l.chars().count() <= 72), "{text}");
    }
}
