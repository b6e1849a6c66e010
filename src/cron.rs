//! Cron expressions (§11): parsing into the sets of seconds, minutes, hours,
//! days and months they allow, and the day rule. Written by hand rather than
//! with a crate so that every error names the field at fault in our words and
//! so that the parser decides nothing about time: which instants the slots
//! become, and what DST does to them, is `schedule.rs`'s business alone.
//!
//! Day rule (Vixie cron): when both day-of-month and day-of-week are
//! restricted (neither is a bare `*`), a day matches when either does; when
//! one is `*`, the other alone decides.

use chrono::{Datelike, NaiveDate};

/// A parsed cron expression. Equality compares what it matches, not how it
/// was written, so that `0 0 * * *` and `@daily` are the same schedule.
#[derive(Debug, Clone)]
pub struct Cron {
    /// The expression as given, surrounding whitespace trimmed and inner runs
    /// of whitespace collapsed: what is stored and shown.
    text: String,
    fields: Fields,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// `L`: the last day of the month.
    last_day: bool,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday 0.
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Eq for Cron {}

/// Why an expression was rejected; the message completes
/// "`EXPR` is not a valid cron expression: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Neither five nor six fields, nor a known macro.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second, or a macro such as @daily; found {0}")]
    FieldCount(usize),
    /// An `@` word that is not one of the macros.
    #[error("unknown macro {0:?}: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")]
    Macro(String),
    /// One field is malformed or out of range.
    #[error("the {field} field {value:?} is not valid: expected {expected}")]
    Field {
        /// Which field: `minute`, `hour`, `day-of-month`, `month`, `day-of-week`.
        field: &'static str,
        /// The field as written.
        value: String,
        /// What the field may hold.
        expected: String,
    },
    /// The fields are each valid but no day of any year matches them.
    #[error("it never matches: no month of the month field has a day of the day-of-month field")]
    NeverMatches,
}

struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// `L` allowed (day-of-month).
    last: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Spec = Spec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    last: false,
};
const MINUTE: Spec = Spec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    last: false,
};
const HOUR: Spec = Spec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    last: false,
};
const DAY: Spec = Spec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    last: true,
};
const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTH_NAMES,
    last: false,
};
const WEEKDAY: Spec = Spec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAY_NAMES,
    last: false,
};

impl Spec {
    fn expected(&self) -> String {
        let names = match self.name {
            "month" => " or JAN-DEC",
            "day-of-week" => " or SUN-SAT (0 and 7 are Sunday)",
            _ => "",
        };
        let last = if self.last {
            ", or L for the last day"
        } else {
            ""
        };
        format!(
            "*, numbers {}-{}{names}, ranges a-b, steps */n or a-b/n, comma lists of those{last}",
            self.min, self.max
        )
    }

    fn value(&self, text: &str) -> Option<u32> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<u32>()
                .ok()
                .filter(|v| (self.min..=self.max).contains(v));
        }
        let offset = if self.min == 1 { 1 } else { 0 };
        self.names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(text))
            .and_then(|i| u32::try_from(i).ok())
            .map(|i| i + offset)
    }

    /// The set of values of one field, as bits, and whether it held `L`.
    fn parse(&self, text: &str) -> Result<(u64, bool), CronError> {
        let err = || CronError::Field {
            field: self.name,
            value: text.to_string(),
            expected: self.expected(),
        };
        let mut bits = 0u64;
        let mut last = false;
        for item in text.split(',') {
            if self.last && item.eq_ignore_ascii_case("L") {
                last = true;
                continue;
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    let step = step
                        .parse::<u32>()
                        .ok()
                        .filter(|s| *s >= 1 && step.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(err)?;
                    (range, Some(step))
                }
                None => (item, None),
            };
            let (low, high) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (
                    self.value(a).ok_or_else(err)?,
                    self.value(b).ok_or_else(err)?,
                );
                if a > b {
                    return Err(err());
                }
                (a, b)
            } else {
                let v = self.value(range).ok_or_else(err)?;
                // `5/15` means 5, 20, 35, 50, as in most crons.
                (v, if step.is_some() { self.max } else { v })
            };
            let step = step.unwrap_or(1);
            let mut v = low;
            while v <= high {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, last))
    }
}

impl Cron {
    /// Parse five or six fields, or a macro.
    pub fn parse(expression: &str) -> Result<Cron, CronError> {
        let words: Vec<&str> = expression.split_whitespace().collect();
        let text = words.join(" ");
        let expanded: Vec<&str> = match words.as_slice() {
            [word] if word.starts_with('@') => match word.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => vec!["0", "0", "1", "1", "*"],
                "@monthly" => vec!["0", "0", "1", "*", "*"],
                "@weekly" => vec!["0", "0", "*", "*", "0"],
                "@daily" | "@midnight" => vec!["0", "0", "*", "*", "*"],
                "@hourly" => vec!["0", "*", "*", "*", "*"],
                _ => return Err(CronError::Macro(word.to_string())),
            },
            _ => words.clone(),
        };
        let (second, rest) = match expanded.len() {
            5 => ("0", &expanded[..]),
            6 => (expanded[0], &expanded[1..]),
            n => return Err(CronError::FieldCount(n)),
        };
        let (seconds, _) = SECOND.parse(second)?;
        let (minutes, _) = MINUTE.parse(rest[0])?;
        let (hours, _) = HOUR.parse(rest[1])?;
        let (days, last_day) = DAY.parse(rest[2])?;
        let (months, _) = MONTH.parse(rest[3])?;
        let (mut weekdays, _) = WEEKDAY.parse(rest[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        let fields = Fields {
            seconds,
            minutes,
            hours: u32::try_from(hours).unwrap_or(0),
            days: u32::try_from(days).unwrap_or(0),
            last_day,
            months: u16::try_from(months).unwrap_or(0),
            weekdays: u8::try_from(weekdays).unwrap_or(0),
            days_restricted: rest[2] != "*",
            weekdays_restricted: rest[4] != "*",
        };
        if !fields.can_match() {
            return Err(CronError::NeverMatches);
        }
        Ok(Cron { text, fields })
    }

    /// The expression as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the expression allows this calendar day.
    pub fn matches_date(&self, date: NaiveDate) -> bool {
        let f = &self.fields;
        if f.months & (1 << date.month()) == 0 {
            return false;
        }
        let day = date.day();
        let is_last = date
            .succ_opt()
            .is_none_or(|next| next.month() != date.month());
        let by_day = f.days & (1 << day) != 0 || (f.last_day && is_last);
        let by_weekday = f.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (f.days_restricted, f.weekdays_restricted) {
            (true, true) => by_day || by_weekday,
            (true, false) => by_day,
            (false, true) => by_weekday,
            (false, false) => true,
        }
    }

    /// The allowed hours, minutes and seconds, each ascending.
    pub fn hours(&self) -> impl Iterator<Item = u32> + '_ {
        (0..24).filter(|h| self.fields.hours & (1 << h) != 0)
    }

    /// The minutes it matches, in order.
    pub fn minutes(&self) -> impl Iterator<Item = u32> + '_ {
        (0..60).filter(|m| self.fields.minutes & (1u64 << m) != 0)
    }

    /// The seconds it matches, in order.
    pub fn seconds(&self) -> impl Iterator<Item = u32> + '_ {
        (0..60).filter(|s| self.fields.seconds & (1u64 << s) != 0)
    }
}

impl Fields {
    /// Some day of some year matches: a restricted day-of-week always finds
    /// one; otherwise some allowed month must have an allowed day (29
    /// February counts: leap years come).
    fn can_match(&self) -> bool {
        const LONGEST: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if self.weekdays_restricted && self.weekdays == 0 {
            return false;
        }
        if !self.days_restricted || self.weekdays_restricted {
            return self.months != 0;
        }
        (1..=12).any(|m| {
            self.months & (1 << m) != 0
                && (self.last_day || (1..=LONGEST[m]).any(|d| self.days & (1 << d) != 0))
        })
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(s: &str) -> Cron {
        Cron::parse(s).unwrap()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn err(s: &str) -> String {
        Cron::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn five_fields_default_the_second_to_zero_and_six_take_it_first() {
        let c = cron("30 2 * * *");
        assert_eq!(c.seconds().collect::<Vec<_>>(), [0]);
        assert_eq!(c.minutes().collect::<Vec<_>>(), [30]);
        assert_eq!(c.hours().collect::<Vec<_>>(), [2]);
        let c = cron("15 30 2 * * *");
        assert_eq!(c.seconds().collect::<Vec<_>>(), [15]);
    }

    #[test]
    fn stars_ranges_steps_and_lists() {
        assert_eq!(
            cron("*/15 * * * *").minutes().collect::<Vec<_>>(),
            [0, 15, 30, 45]
        );
        assert_eq!(
            cron("10-20/5 * * * *").minutes().collect::<Vec<_>>(),
            [10, 15, 20]
        );
        assert_eq!(cron("0 1-3 * * *").hours().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            cron("1,5,7-8 * * * *").minutes().collect::<Vec<_>>(),
            [1, 5, 7, 8]
        );
        assert_eq!(cron("50/5 * * * *").minutes().collect::<Vec<_>>(), [50, 55]);
        assert_eq!(cron("* * * * *").minutes().count(), 60);
    }

    #[test]
    fn names_in_any_case_and_sunday_as_0_or_7() {
        assert_eq!(cron("0 0 * jan-MAR mon"), cron("0 0 * 1-3 1"));
        assert_eq!(cron("0 0 * * 7"), cron("0 0 * * 0"));
        assert_eq!(cron("0 0 * * SUN"), cron("0 0 * * sun"));
        assert_eq!(cron("0 9 * * MON-FRI"), cron("0 9 * * 1-5"));
        // 2026-11-27 is a Friday, 2026-11-28 a Saturday.
        let c = cron("0 9 * * MON-FRI");
        assert!(c.matches_date(d(2026, 11, 27)));
        assert!(!c.matches_date(d(2026, 11, 28)));
    }

    #[test]
    fn l_is_the_last_day_of_the_month() {
        let c = cron("0 0 L * *");
        assert!(c.matches_date(d(2026, 2, 28)));
        assert!(c.matches_date(d(2028, 2, 29)));
        assert!(!c.matches_date(d(2028, 2, 28)));
        assert!(c.matches_date(d(2026, 4, 30)));
        assert!(c.matches_date(d(2026, 12, 31)));
        assert!(!c.matches_date(d(2026, 12, 30)));
    }

    #[test]
    fn macros_are_their_expansions() {
        assert_eq!(cron("@yearly"), cron("0 0 1 1 *"));
        assert_eq!(cron("@annually"), cron("0 0 1 1 *"));
        assert_eq!(cron("@monthly"), cron("0 0 1 * *"));
        assert_eq!(cron("@weekly"), cron("0 0 * * 0"));
        assert_eq!(cron("@daily"), cron("0 0 * * *"));
        assert_eq!(cron("@midnight"), cron("0 0 * * *"));
        assert_eq!(cron("@hourly"), cron("0 * * * *"));
        assert_eq!(cron("@DAILY").as_str(), "@DAILY");
    }

    #[test]
    fn both_days_restricted_means_either_matches() {
        // The 1st, or any Monday.
        let c = cron("0 0 1 * MON");
        assert!(c.matches_date(d(2026, 12, 1))); // a Tuesday
        assert!(c.matches_date(d(2026, 11, 30))); // a Monday
        assert!(!c.matches_date(d(2026, 12, 2)));
        // Only one restricted: that one alone.
        assert!(!cron("0 0 1 * *").matches_date(d(2026, 11, 30)));
        assert!(!cron("0 0 * * MON").matches_date(d(2026, 12, 1)));
    }

    #[test]
    fn whitespace_is_collapsed_in_the_stored_text() {
        assert_eq!(cron("  0   9 * *  1 ").as_str(), "0 9 * * 1");
    }

    #[test]
    fn every_error_names_the_field_at_fault() {
        let expected = |f: &str, v: &str, range: &str, extra: &str| {
            format!("the {f} field {v:?} is not valid: expected *, numbers {range}{extra}, ranges a-b, steps */n or a-b/n, comma lists of those")
        };
        assert_eq!(err("60 * * * *"), expected("minute", "60", "0-59", ""));
        assert_eq!(err("0 24 * * *"), expected("hour", "24", "0-23", ""));
        assert_eq!(
            err("0 0 0 * *"),
            format!(
                "{}, or L for the last day",
                expected("day-of-month", "0", "1-31", "")
            )
        );
        assert_eq!(
            err("0 0 * 13 *"),
            expected("month", "13", "1-12", " or JAN-DEC")
        );
        assert_eq!(
            err("0 0 * * 8"),
            expected(
                "day-of-week",
                "8",
                "0-7",
                " or SUN-SAT (0 and 7 are Sunday)"
            )
        );
        assert_eq!(err("60 0 0 * * *"), expected("second", "60", "0-59", ""));
        for bad in ["*/0", "5-1", "a", "1,", "*/x", "1-", "-1", "1/2/3", "L"] {
            let text = format!("{bad} * * * *");
            assert!(
                err(&text).starts_with(&format!("the minute field {bad:?}")),
                "{text}: {}",
                err(&text)
            );
        }
        assert!(err("0 0 * FOO *").starts_with("the month field \"FOO\""));
        assert!(err("0 0 * * MONDAY").starts_with("the day-of-week field \"MONDAY\""));
    }

    #[test]
    fn wrong_field_counts_and_unknown_macros_are_errors() {
        assert_eq!(
            err("* * * *"),
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second, or a macro such as @daily; found 4"
        );
        assert!(err("* * * * * * *").ends_with("found 7"));
        assert!(err("").ends_with("found 0"));
        assert_eq!(
            err("@often"),
            "unknown macro \"@often\": expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
        );
    }

    #[test]
    fn an_expression_that_never_matches_is_an_error() {
        assert_eq!(
            err("0 0 30 2 *"),
            "it never matches: no month of the month field has a day of the day-of-month field"
        );
        assert_eq!(err("0 0 31 4,6,9,11 *"), err("0 0 30 2 *"));
        // 29 February comes in leap years; a weekday rescues the 30th.
        assert!(Cron::parse("0 0 29 2 *").is_ok());
        assert!(Cron::parse("0 0 30 2 MON").is_ok());
        assert!(Cron::parse("0 0 L 2 *").is_ok());
    }
}
