//! The value parsers of `jobs configure` and `run-now`, as clap calls them
//! and as the web page calls them for the same fields: one parser per kind of
//! value, so a bad value gets the same error text wherever it is typed.
//! Below both interfaces, so that neither imports the other for them.

use crate::schedule;

/// A parsed `--override-times` value (a newtype: clap reads a bare `Vec` as
/// "the option may repeat").
#[derive(Debug, Clone)]
pub struct TimesList(pub Vec<chrono::NaiveTime>);

pub fn parse_times_arg(text: &str) -> Result<TimesList, String> {
    schedule::parse_times(text)
        .map(TimesList)
        .map_err(|e| e.to_string())
}

pub fn parse_cron_arg(text: &str) -> Result<schedule::Cron, String> {
    schedule::parse_cron(text).map_err(|e| e.to_string())
}

pub fn parse_zone_arg(text: &str) -> Result<chrono_tz::Tz, String> {
    schedule::parse_zone(text).map_err(|e| e.to_string())
}

pub fn parse_duration_arg(text: &str) -> Result<u32, String> {
    schedule::parse_duration(text).map_err(|e| e.to_string())
}

pub fn parse_alert_after_arg(text: &str) -> Result<u32, String> {
    let (min, max) = (crate::job::MIN_ALERT_AFTER, crate::job::MAX_ALERT_AFTER);
    count_in(text, "failures", min.unsigned_abs(), max.unsigned_abs())
}

/// An instant given as itself or as a while from now (`--pause-until`,
/// `hold --until`): `2026-12-24T18:00:00+01:00`, or `HH:MM:SS` / `MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    At(chrono::DateTime<chrono::Utc>),
    In(u32),
}

impl Until {
    /// The instant, with `now` the database's clock.
    pub fn resolve(self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        match self {
            Until::At(at) => at,
            Until::In(secs) => now + chrono::Duration::seconds(i64::from(secs)),
        }
    }
}

pub fn parse_until_arg(text: &str) -> Result<Until, String> {
    let text = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Until::At(at.with_timezone(&chrono::Utc)));
    }
    schedule::parse_duration(text).map(Until::In).map_err(|_| {
        format!(
            "\"{text}\" is neither an RFC 3339 instant nor a duration: expected e.g. \
             2026-12-24T18:00:00+01:00, or HH:MM:SS or MM:SS from now"
        )
    })
}

/// An RFC 3339 instant (`run-now --at`, `--cancel-at`), kept to the
/// millisecond that JSON shows, so that the instant `jobs show --json` lists
/// is the one `--cancel-at` takes.
pub fn parse_instant_arg(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let text = text.trim();
    let at = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        format!("\"{text}\" is not an RFC 3339 instant: expected e.g. 2026-12-24T18:00:00+01:00")
    })?;
    let at = at.with_timezone(&chrono::Utc);
    Ok(chrono::DurationRound::duration_trunc(at, chrono::Duration::milliseconds(1)).unwrap_or(at))
}

/// Tags from one argument (a newtype, so that clap keeps the list as one value).
#[derive(Debug, Clone)]
pub struct TagList(pub Vec<String>);

/// `--runs-on gpu,eu`: tags as `crate::config::parse_tags` reads them.
pub fn parse_tags_arg(text: &str) -> Result<TagList, String> {
    crate::config::parse_tags(text).map(TagList)
}

/// Job names from one argument (`--on-success a,b`, §21).
#[derive(Debug, Clone)]
pub struct JobList(pub Vec<String>);

/// `--on-success a,b`: job names, comma-separated, each a valid name, in
/// order without repeats; an empty argument is the empty list.
pub fn parse_job_list_arg(text: &str) -> Result<JobList, String> {
    let names = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from);
    crate::config::checked_list(names, crate::config::check_job_name).map(JobList)
}

/// `--overlap skip`: an overlap policy (§21).
pub fn parse_overlap_arg(text: &str) -> Result<crate::job::Overlap, String> {
    crate::job::Overlap::parse(text.trim()).ok_or_else(|| {
        format!(
            "\"{text}\" is not an overlap policy: {}",
            crate::job::Overlap::EXPECTED
        )
    })
}

/// `--tag gpu`: one tag (§19).
pub fn parse_tag_arg(text: &str) -> Result<String, String> {
    crate::config::check_tag(text.trim()).map(|()| text.trim().to_string())
}

pub fn parse_retries_arg(text: &str) -> Result<u32, String> {
    count_in(text, "retries", 0, crate::config::MAX_RETRIES)
}

/// A count from `min` to `max`; refused as `"TEXT" is not a number of WHAT:
/// expected an integer from MIN to MAX`.
fn count_in(text: &str, what: &str, min: u32, max: u32) -> Result<u32, String> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!("\"{text}\" is not a number of {what}: expected an integer from {min} to {max}")
        })
}

/// The value parser of a numeric flag: a whole number from `min` to `max`.
/// Every refusal — too big, negative, not a number — states the range, and
/// clap puts the flag and the value in front (`error: invalid value '0' for
/// '--page <PAGE>': expected a whole number from 1 to …`), exit 2. Every
/// argument that takes a number — these, the counts and the durations — also
/// sets `allow_negative_numbers`, so that `-1` is refused by its own parser,
/// with its range, rather than taken for an unknown flag (§18; the test
/// `a_negative_number_gets_the_same_error_as_any_out_of_range_value` finds
/// every numeric argument in the definition).
pub fn number_in<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync,
{
    move |text: &str| match text.trim().parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// `--page` (and the web page's `?page=`): 1 or more (a page past the end is
/// an empty list, not an error).
pub fn parse_page(text: &str) -> Result<u32, String> {
    number_in(1, u32::MAX)(text)
}
