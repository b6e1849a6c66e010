//! Job schedules: parsing and formatting of times of day, time lists,
//! durations and zone names, the override rule, and the computation of the
//! next run instants. Pure functions only: no I/O, and the current time is
//! always passed in as `now`, so every rule here is testable to the second.
//!
//! # DST policy
//!
//! A daily time `W` runs at the first instant at which the zone's wall clock
//! shows `W` or later on that day. That single rule gives both edge cases:
//!
//! * Spring forward: a `W` inside the gap never appears on the clock, so the
//!   job runs at the transition itself (Stockholm 2026-03-29 02:30 runs at
//!   03:00 CEST). Skipping the day instead would silently lose a run of a
//!   job that someone expects daily, and running an hour "later" than the
//!   transition would reorder it against jobs scheduled just after the gap.
//! * Fall back: a `W` inside the fold appears twice; the job runs at the
//!   first occurrence only. Running at both would do a day's work twice.
//!
//! Because the rule is "first instant the clock reaches `W`", the resolved
//! instant is monotone in the wall time, so slots of consecutive days never
//! reorder, a daily job never runs twice for one slot and never skips a day.
//! Two configured times in the same gap resolve to the same instant and are
//! merged into one run, since one instant cannot usefully start a job twice.
//!
//! Cron expressions (§11; parsed in `crate::cron`) are the same thing as
//! times: each allowed day contributes its allowed times of day, and each is
//! resolved by [`resolve_local`], so the policy above holds for them
//! unchanged — a slot in a gap runs at the gap's end (once, however many
//! slots the gap swallowed), a slot in a fold at its first occurrence. The
//! zone passed in is the job's own (`Job::zone`); this module never knows
//! whose zone it is.
//!
//! Intervals are elapsed time, deliberately not wall time: "every 24:00:00"
//! drifts by an hour against the wall clock across a DST change, because a
//! user who wants wall-clock alignment should configure times instead.

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

pub use crate::cron::{Cron, CronError};

/// Upper bound of any duration: 366 days.
pub const MAX_DURATION_SECS: u32 = 8784 * 3600;

/// How a job is scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Daily wall-clock times, sorted ascending and de-duplicated, whole seconds.
    Times(Vec<NaiveTime>),
    /// Elapsed time in seconds, 1..=MAX_DURATION_SECS.
    Interval(u32),
    /// A cron expression: its slots are wall-clock times, like `Times`, and
    /// follow the same DST policy.
    Cron(Cron),
}

/// Why a schedule value was rejected. The `String` is the offending value;
/// `Debug` formatting quotes it, which also escapes control characters so
/// that every message stays on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// A time of day was not `HH:MM` or `HH:MM:SS` within one day.
    #[error(
        "{0:?} is not a valid time of day: expected HH:MM or HH:MM:SS between 00:00 and 23:59:59"
    )]
    TimeOfDay(String),
    /// A list of times was empty or had an empty item.
    #[error("{0:?} is not a valid list of times: expected comma-separated HH:MM or HH:MM:SS")]
    Times(String),
    /// A duration was malformed, zero, or longer than 366 days.
    #[error(
        "{0:?} is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"
    )]
    Duration(String),
    /// A time zone name is not in the IANA database.
    #[error("{0:?} is not a known time zone: expected an IANA name such as Europe/Stockholm")]
    Zone(String),
    /// A cron expression was malformed or can never match.
    #[error("{expression:?} is not a valid cron expression: {error}")]
    Cron {
        expression: String,
        error: CronError,
    },
}

/// A cron expression (§11), or an error naming the expression and the field.
pub fn parse_cron(s: &str) -> Result<Cron, ScheduleError> {
    Cron::parse(s).map_err(|error| ScheduleError::Cron {
        expression: s.trim().to_string(),
        error,
    })
}

fn all_digits(field: &str) -> bool {
    !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a field that must be exactly two ASCII digits below 60.
fn two_digit_sexagesimal(field: &str) -> Option<u32> {
    if field.len() != 2 || !all_digits(field) {
        return None;
    }
    field.parse::<u32>().ok().filter(|v| *v < 60)
}

/// `HH:MM` or `HH:MM:SS` (hour may be one digit), surrounding whitespace ignored.
pub fn parse_time_of_day(s: &str) -> Result<NaiveTime, ScheduleError> {
    let value = s.trim();
    let err = || ScheduleError::TimeOfDay(value.to_string());
    let fields: Vec<&str> = value.split(':').collect();
    let (h, m, sec) = match fields.as_slice() {
        [h, m] => (*h, *m, "00"),
        [h, m, sec] => (*h, *m, *sec),
        _ => return Err(err()),
    };
    if h.len() > 2 || !all_digits(h) {
        return Err(err());
    }
    let hour = h.parse::<u32>().ok().filter(|v| *v < 24).ok_or_else(err)?;
    let minute = two_digit_sexagesimal(m).ok_or_else(err)?;
    let second = two_digit_sexagesimal(sec).ok_or_else(err)?;
    NaiveTime::from_hms_opt(hour, minute, second).ok_or_else(err)
}

/// A comma-separated list of times of day, returned sorted and de-duplicated.
/// An item that is not a time is reported by itself, so the message points
/// at the culprit rather than at the whole list.
pub fn parse_times(s: &str) -> Result<Vec<NaiveTime>, ScheduleError> {
    let mut times = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err(ScheduleError::Times(s.trim().to_string()));
        }
        times.push(parse_time_of_day(item)?);
    }
    Ok(normalize_times(times))
}

/// Sorts and de-duplicates; also drops sub-second parts, because schedules
/// are whole seconds and `12:00:00.5` must not count as a second slot.
pub fn normalize_times(times: Vec<NaiveTime>) -> Vec<NaiveTime> {
    let mut times: Vec<NaiveTime> = times
        .into_iter()
        .map(|t| t.with_nanosecond(0).unwrap_or(t))
        .collect();
    times.sort_unstable();
    times.dedup();
    times
}

/// `MM:SS` or `HH:MM:SS` in seconds, 1..=[`MAX_DURATION_SECS`].
pub fn parse_duration(s: &str) -> Result<u32, ScheduleError> {
    let value = s.trim();
    let err = || ScheduleError::Duration(value.to_string());
    let fields: Vec<&str> = value.split(':').collect();
    let (lead, rest): (&str, &[&str]) = match fields.as_slice() {
        [lead, rest @ ..] if (1..=2).contains(&rest.len()) => (lead, rest),
        _ => return Err(err()),
    };
    if !all_digits(lead) {
        return Err(err());
    }
    // Any number of digits is allowed in the leading field, so a huge value
    // must fail as "too long" rather than overflow.
    let lead = lead.parse::<u64>().map_err(|_| err())?;
    let mut total = lead;
    for field in rest {
        let v = two_digit_sexagesimal(field).ok_or_else(err)?;
        total = total
            .checked_mul(60)
            .and_then(|t| t.checked_add(u64::from(v)))
            .ok_or_else(err)?;
    }
    if total == 0 || total > u64::from(MAX_DURATION_SECS) {
        return Err(err());
    }
    u32::try_from(total).map_err(|_| err())
}

/// `HH:MM:SS` with at least two hour digits; hours go past 23.
pub fn format_duration(secs: u32) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `HH:MM:SS`.
pub fn format_time(t: NaiveTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// An IANA zone name, exact spelling, surrounding whitespace ignored.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    let value = name.trim();
    value
        .parse::<Tz>()
        .map_err(|_| ScheduleError::Zone(value.to_string()))
}

impl Schedule {
    /// Human/JSON description: times -> "03:07:00, 15:00:00"; interval -> "every 00:05:00".
    pub fn describe(&self) -> String {
        match self {
            Schedule::Times(times) => times
                .iter()
                .map(|t| format_time(*t))
                .collect::<Vec<_>>()
                .join(", "),
            Schedule::Interval(secs) => format!("every {}", format_duration(*secs)),
            Schedule::Cron(cron) => format!("cron {}", cron.as_str()),
        }
    }

    /// The same schedule in canonical form, so that equality means "runs
    /// at the same moments" rather than "was typed the same way".
    fn normalized(&self) -> Schedule {
        match self {
            Schedule::Times(times) => Schedule::Times(normalize_times(times.clone())),
            Schedule::Interval(secs) => Schedule::Interval(*secs),
            Schedule::Cron(cron) => Schedule::Cron(cron.clone()),
        }
    }
}

/// The override replaces the built-in schedule entirely.
pub fn effective<'a>(
    builtin: Option<&'a Schedule>,
    override_: Option<&'a Schedule>,
) -> Option<&'a Schedule> {
    override_.or(builtin)
}

/// An override equal to the built-in schedule is stored as no override (compare normalised: times as sorted set, interval in seconds).
///
/// Storing none keeps the job following future changes of its built-in
/// schedule instead of pinning today's value. A kept override is returned
/// normalised.
pub fn normalize_override(
    builtin: Option<&Schedule>,
    override_: Option<Schedule>,
) -> Option<Schedule> {
    let candidate = override_?.normalized();
    match builtin {
        Some(b) if b.normalized() == candidate => None,
        _ => Some(candidate),
    }
}

/// Map a wall-clock date+time in `tz` to one instant (the DST policy lives here).
///
/// The result is the first instant at which the clock in `tz` shows
/// `date time` or later: the earliest occurrence in a fold, the transition
/// instant in a gap. See the module documentation for why.
pub fn resolve_local(date: NaiveDate, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let local = date.and_time(time);
    match tz.from_local_datetime(&local) {
        LocalResult::Single(dt) => dt.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
        LocalResult::None => gap_end(local, tz)
            .or_else(|| scan_forward(local, tz))
            // Only reachable at the ends of chrono's date range; reading the
            // wall time as UTC keeps the answer within a day of the truth.
            .unwrap_or_else(|| local.and_utc()),
    }
}

/// What the clock in `tz` shows at `at`; `None` only where that lies past
/// the end of chrono's calendar, which `with_timezone` would panic on.
fn wall_clock(at: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&at.naive_utc()).fix();
    at.naive_utc().checked_add_offset(offset)
}

fn offset_secs_at(utc: NaiveDateTime, tz: Tz) -> i64 {
    i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc())
}

/// The transition instant ending the gap that swallows `local`.
///
/// Read with the post-gap offset, `local` names an instant before the
/// transition; read with the pre-gap offset, one after it. Between those
/// two, "the clock has reached `local`" flips from false to true exactly
/// once, so a binary search over whole seconds finds the transition for any
/// gap length or offset granularity (e.g. Lord Howe's 30 minutes).
fn gap_end(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let day = Duration::days(1);
    // A day either side is well clear of the gap yet, in every real zone,
    // nearer than the previous or next transition.
    let pre = offset_secs_at(local.checked_sub_signed(day)?, tz);
    let post = offset_secs_at(local.checked_add_signed(day)?, tz);
    let wall = local.and_utc().timestamp();
    let mut lo = wall.checked_sub(post)?;
    let mut hi = wall.checked_sub(pre)?;
    let reached = |ts: i64| -> Option<bool> {
        let instant = DateTime::from_timestamp(ts, 0)?;
        Some(wall_clock(instant, tz)? >= local)
    };
    // Should two transitions crowd into two days, the bracket may not hold;
    // the caller then falls back to a scan rather than trusting a bad search.
    if lo >= hi || reached(lo)? || !reached(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reached(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

/// Last-resort search for the end of a gap, a minute at a time for up to two
/// days. Transitions in the tz database fall on whole minutes, so this finds
/// the same instant as `gap_end` whenever that one gives up.
fn scan_forward(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let mut wall = local.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..(2 * 24 * 60) {
        wall = wall.checked_add_signed(Duration::minutes(1))?;
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(dt) => return Some(dt.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => {
                return Some(a.with_timezone(&Utc).min(b.with_timezone(&Utc)));
            }
            LocalResult::None => {}
        }
    }
    None
}

/// Clamped so that a corrupt zero interval cannot make the runner spin.
fn interval_duration(secs: u32) -> Duration {
    Duration::seconds(i64::from(secs.clamp(1, MAX_DURATION_SECS)))
}

/// The next run of a job.
///
/// Interval: the later of `last_run` and `last_skip` plus the interval, or
/// `now` plus the interval when the job never ran nor was skipped. Times:
/// the first slot strictly after `now`; history is ignored because the slot
/// grid is fixed by the wall clock. A schedule with no times never runs,
/// which is reported as the largest representable instant.
pub fn next_run(
    schedule: &Schedule,
    last_run: Option<DateTime<Utc>>,
    last_skip: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    tz: Tz,
) -> DateTime<Utc> {
    match schedule {
        Schedule::Interval(secs) => {
            let base = last_run.max(last_skip).unwrap_or(now);
            base.checked_add_signed(interval_duration(*secs))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        }
        Schedule::Times(times) => time_slots_after(times, now, 1, tz)
            .first()
            .copied()
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        Schedule::Cron(cron) => cron_slots_after(cron, now, 1, tz)
            .first()
            .copied()
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

/// A job's jitter (§21): each slot is delayed by a pseudo-random offset in
/// `[0, secs)`, derived from the job's name and the slot's instant alone, so
/// every runner (of any version) and `jobs next` agree on it, and a fleet's
/// jobs sharing a slot do not all start at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter<'a> {
    pub name: &'a str,
    pub secs: u32,
}

impl Jitter<'_> {
    /// The offset of `slot`, to the millisecond: FNV-1a (64 bit) over the
    /// name, a zero byte and the slot's Unix milliseconds (little-endian),
    /// reduced modulo the jitter. Written out rather than a std hasher,
    /// whose output may change between Rust releases.
    pub fn offset(&self, slot: DateTime<Utc>) -> Duration {
        let span = u64::from(self.secs.min(MAX_DURATION_SECS)) * 1000;
        if span == 0 {
            return Duration::zero();
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let stamp = slot.timestamp_millis().to_le_bytes();
        for byte in self.name.bytes().chain([0]).chain(stamp) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Duration::milliseconds(i64::try_from(hash % span).unwrap_or(0))
    }

    /// `slot` delayed by its offset (the far future stays where it is).
    pub fn apply(&self, slot: DateTime<Utc>) -> DateTime<Utc> {
        slot.checked_add_signed(self.offset(slot)).unwrap_or(slot)
    }
}

/// [`next_run`] with each slot delayed by `jitter`. For times and cron the
/// next run is the first slot whose delayed instant is after `now` — a slot
/// already passed by less than the jitter may still be ahead (a reschedule
/// between a slot and its delayed start keeps that run). For an interval,
/// the slot after the last run or skip, delayed.
pub fn next_run_jittered(
    schedule: &Schedule,
    last_run: Option<DateTime<Utc>>,
    last_skip: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    tz: Tz,
    jitter: Jitter<'_>,
) -> DateTime<Utc> {
    if jitter.secs == 0 {
        return next_run(schedule, last_run, last_skip, now, tz);
    }
    match schedule {
        Schedule::Interval(_) => jitter.apply(next_run(schedule, last_run, last_skip, now, tz)),
        Schedule::Times(_) | Schedule::Cron(_) => runs_after_jittered(schedule, now, 1, tz, jitter)
            .first()
            .copied()
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    }
}

/// Whether the slot after the one a run was due for came before that run
/// started, though the run was late by less than one gap between slots
/// (§21, times and cron with a jitter). `due` is the run's delayed slot.
///
/// Without a jitter a run that late still has its next slot ahead of it;
/// with one, two neighbouring slots' delays may bring them close (a slot
/// delayed by 59.9 s, the next by 0.1 s), and a run a little late would
/// lose the next slot to "the first slot after now". Such a slot is owed:
/// the caller runs the job again at once, as for a slot that came while it
/// ran. False when `due` is no delayed slot of `schedule` (a requested or
/// caught-up run, a reschedule meanwhile) or the run was late by a gap or
/// more (the downtime rule of §3 stands).
pub fn next_slot_passed_while_late(
    schedule: &Schedule,
    due: DateTime<Utc>,
    started: DateTime<Utc>,
    tz: Tz,
    jitter: Jitter<'_>,
) -> bool {
    if jitter.secs == 0 || matches!(schedule, Schedule::Interval(_)) || started <= due {
        return false;
    }
    // The run's own slot is less than the jitter before its delayed instant.
    let slots = runs_after(
        schedule,
        due - Duration::seconds(i64::from(jitter.secs)),
        3,
        tz,
    );
    let Some(own) = slots.iter().position(|slot| jitter.apply(*slot) == due) else {
        return false;
    };
    let Some(next) = slots.get(own + 1) else {
        return false;
    };
    started - due < *next - slots[own] && jitter.apply(*next) <= started
}

/// [`runs_after`] with each slot delayed by `jitter`: the first `count`
/// delayed instants strictly after `after`. The jitter is at most the
/// shortest gap between slots, so delaying keeps the slots' order. For an
/// interval, each run counts from the (delayed) one before it, as the runner
/// would if each run took no time.
pub fn runs_after_jittered(
    schedule: &Schedule,
    after: DateTime<Utc>,
    count: usize,
    tz: Tz,
    jitter: Jitter<'_>,
) -> Vec<DateTime<Utc>> {
    if jitter.secs == 0 {
        return runs_after(schedule, after, count, tz);
    }
    match schedule {
        Schedule::Interval(secs) => interval_runs(*secs, after, count, |slot| jitter.apply(slot)),
        Schedule::Times(_) | Schedule::Cron(_) => {
            // A slot up to the jitter before `after` may be delayed past it.
            let from = after - Duration::seconds(i64::from(jitter.secs));
            let wanted = count.saturating_add(2);
            runs_after(schedule, from, wanted, tz)
                .into_iter()
                .map(|slot| jitter.apply(slot))
                .filter(|at| *at > after)
                .take(count)
                .collect()
        }
    }
}

/// The shortest gap between two slots of `schedule` in `tz`, in seconds,
/// which bounds its jitter (§21): the interval itself; for times, the
/// shortest wall-clock gap between two of them, around midnight too (a
/// single time: 23 hours, the shortest day); for cron, the shortest gap among
/// its next 1,000 slots from the start of 2026 in `tz`, a year and more of
/// most expressions. None when it has no slots at all.
pub fn shortest_gap(schedule: &Schedule, tz: Tz) -> Option<u32> {
    match schedule {
        Schedule::Interval(secs) => Some(*secs),
        Schedule::Times(times) => {
            let mut secs: Vec<i64> = times
                .iter()
                .map(|t| i64::from(t.num_seconds_from_midnight()))
                .collect();
            secs.sort_unstable();
            secs.dedup();
            match secs.as_slice() {
                [] => None,
                [_] => Some(23 * 3600),
                all => {
                    let mut gaps: Vec<i64> = all.windows(2).map(|w| w[1] - w[0]).collect();
                    gaps.push(all[0] + 86_400 - all[all.len() - 1]);
                    gaps.into_iter().min().and_then(|g| u32::try_from(g).ok())
                }
            }
        }
        Schedule::Cron(cron) => {
            let start = DateTime::<Utc>::from_timestamp(1_767_225_600, 0)?; // 2026-01-01
            let slots = cron_slots_after(cron, start, 1000, tz);
            slots
                .windows(2)
                .map(|w| (w[1] - w[0]).num_seconds())
                .min()
                .and_then(|g| u32::try_from(g).ok())
                .or(Some(MAX_DURATION_SECS))
        }
    }
}

/// `count` runs of an interval schedule after `after`, each `delay(slot)`
/// and counting from the (delayed) one before it, as the runner would if each
/// run took no time.
fn interval_runs(
    secs: u32,
    after: DateTime<Utc>,
    count: usize,
    delay: impl Fn(DateTime<Utc>) -> DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let step = interval_duration(secs);
    let mut runs = Vec::with_capacity(count.min(1024));
    let mut at = after;
    while runs.len() < count {
        match at.checked_add_signed(step) {
            Some(slot) => {
                at = delay(slot);
                runs.push(at);
            }
            None => break,
        }
    }
    runs
}

/// The next `count` runs strictly after `after`, for `jobs next --after X`.
pub fn runs_after(
    schedule: &Schedule,
    after: DateTime<Utc>,
    count: usize,
    tz: Tz,
) -> Vec<DateTime<Utc>> {
    match schedule {
        Schedule::Interval(secs) => interval_runs(*secs, after, count, |slot| slot),
        Schedule::Times(times) => time_slots_after(times, after, count, tz),
        Schedule::Cron(cron) => cron_slots_after(cron, after, count, tz),
    }
}

/// Resolved cron slots strictly after `after`, ascending, equal instants
/// merged: the same walk as [`time_slots_after`], over the days the
/// expression allows and, on each, its times of day, each resolved by
/// [`resolve_local`] (so a slot in a gap runs at the gap's end, several in
/// one gap run once, and a slot in a fold runs at its first occurrence).
///
/// The walk gives up after eight years and a bit without a matching day, the
/// longest wait a valid expression can have (29 February across a skipped
/// leap year), so a long listing of a rare expression is still complete. Within a
/// day, resolved slots are monotone, so a slot equal to the previous one is a
/// merge and the walk of a day stops once `count` are found. A slot whose
/// wall time is before the clock's reading at `after` resolves to `after` or
/// earlier (the first instant the clock reaches it has passed), so hours and
/// minutes well before that reading — three hours, wider than any DST shift —
/// are skipped unresolved; the filter on `after` decides the rest. This keeps
/// a year of `*/15` and per-second expressions cheap.
fn cron_slots_after(cron: &Cron, after: DateTime<Utc>, count: usize, tz: Tz) -> Vec<DateTime<Utc>> {
    const MAX_DAYS: u32 = 3000;
    if count == 0 {
        return Vec::new();
    }
    let Some(after_wall) = wall_clock(after, tz) else {
        return Vec::new();
    };
    let Some(mut date) = after_wall.date().pred_opt() else {
        return Vec::new();
    };
    let early = after_wall - Duration::hours(3);
    let mut found: Vec<DateTime<Utc>> = Vec::new();
    let mut extra_days = 0;
    let mut idle_days = 0;
    while idle_days < MAX_DAYS {
        idle_days += 1;
        if cron.matches_date(date) {
            idle_days = 0;
            'day: for hour in cron.hours() {
                let Some(hour_end) = date.and_hms_opt(hour, 59, 59) else {
                    continue;
                };
                if hour_end < early {
                    continue;
                }
                for minute in cron.minutes() {
                    match date.and_hms_opt(hour, minute, 59) {
                        Some(minute_end) if minute_end >= early => {}
                        _ => continue,
                    }
                    for second in cron.seconds() {
                        let Some(time) = NaiveTime::from_hms_opt(hour, minute, second) else {
                            continue;
                        };
                        let at = resolve_local(date, time, tz);
                        if at <= after || found.last() == Some(&at) {
                            continue;
                        }
                        found.push(at);
                        if found.len() >= count + extra_days * count {
                            break 'day;
                        }
                    }
                }
            }
            if found.len() >= count {
                if extra_days >= 1 {
                    break;
                }
                extra_days += 1;
            }
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    found.sort_unstable();
    found.dedup();
    found.truncate(count);
    found
}

/// Resolved daily slots strictly after `after`, ascending, equal instants
/// merged.
///
/// The walk starts at the local day before `after`: a slot late on that day
/// can resolve past midnight when it falls in a gap at the day boundary.
/// It goes one day past the day that completes `count`, and sorts at the end,
/// so that the answer does not rely on resolved slots being monotone across
/// days (they are, by the policy, but this keeps a zone-data oddity from
/// turning into a wrong order).
fn time_slots_after(
    times: &[NaiveTime],
    after: DateTime<Utc>,
    count: usize,
    tz: Tz,
) -> Vec<DateTime<Utc>> {
    if times.is_empty() || count == 0 {
        return Vec::new();
    }
    let Some(mut date) = wall_clock(after, tz).and_then(|w| w.date().pred_opt()) else {
        return Vec::new();
    };
    let mut found: Vec<DateTime<Utc>> = Vec::new();
    let mut extra_days = 0;
    loop {
        let mut day: Vec<DateTime<Utc>> = times
            .iter()
            .map(|t| resolve_local(date, *t, tz))
            .filter(|at| *at > after)
            .collect();
        day.sort_unstable();
        day.dedup();
        found.append(&mut day);
        // Sorting only once enough candidates exist keeps long listings
        // linear; merged instants are rare enough that re-checking is cheap.
        if found.len() >= count {
            found.sort_unstable();
            found.dedup();
        }
        if found.len() >= count {
            if extra_days >= 1 {
                break;
            }
            extra_days += 1;
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    found.sort_unstable();
    found.dedup();
    found.truncate(count);
    found
}

/// An instant as people read it everywhere (tables, logs, mail):
/// `YYYY-MM-DD HH:MM:SS` in `tz` plus the zone's abbreviation.
pub fn human_instant(instant: DateTime<Utc>, tz: Tz) -> String {
    instant
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// An instant as programs read it (JSON everywhere, the runner's JSON log):
/// RFC 3339 with milliseconds and `tz`'s offset at that instant.
pub fn json_instant(instant: DateTime<Utc>, tz: Tz) -> String {
    instant
        .with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Days;
    use std::collections::BTreeMap;

    fn t(s: &str) -> NaiveTime {
        parse_time_of_day(s).unwrap()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn times(s: &str) -> Schedule {
        Schedule::Times(parse_times(s).unwrap())
    }

    fn offset_at(tz: Tz, at: DateTime<Utc>) -> i32 {
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    }

    // ---- time of day ----

    #[test]
    fn time_of_day_accepts_hh_mm_and_hh_mm_ss() {
        assert_eq!(t("03:07"), NaiveTime::from_hms_opt(3, 7, 0).unwrap());
        assert_eq!(t("15:00:30"), NaiveTime::from_hms_opt(15, 0, 30).unwrap());
        assert_eq!(t("00:00"), NaiveTime::MIN);
        assert_eq!(t("23:59:59"), NaiveTime::from_hms_opt(23, 59, 59).unwrap());
    }

    #[test]
    fn time_of_day_allows_single_digit_hour_and_surrounding_whitespace() {
        assert_eq!(t("3:07"), NaiveTime::from_hms_opt(3, 7, 0).unwrap());
        assert_eq!(t("  3:07:05\t"), NaiveTime::from_hms_opt(3, 7, 5).unwrap());
    }

    #[test]
    fn time_of_day_rejects_everything_else() {
        for bad in [
            "",
            " ",
            "24:00",
            "25:00",
            "12:60",
            "12:00:60",
            "12",
            "12:5",
            "12:5:00",
            "12:00:5",
            "012:00",
            "1:2",
            "a1:00",
            "+1:00",
            "-1:00",
            "12:00:00:00",
            ":30",
            "12:",
            "12::00",
            "1 2:00",
            "12 :00",
            "１２:00",
            "12:00:00.5",
        ] {
            assert_eq!(
                parse_time_of_day(bad),
                Err(ScheduleError::TimeOfDay(bad.trim().to_string())),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn time_of_day_error_text_is_exact() {
        assert_eq!(
            parse_time_of_day("25:00").unwrap_err().to_string(),
            r#""25:00" is not a valid time of day: expected HH:MM or HH:MM:SS between 00:00 and 23:59:59"#
        );
    }

    #[test]
    fn error_messages_stay_on_one_line_for_hostile_input() {
        let msg = parse_time_of_day("1\n2").unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.starts_with(r#""1\n2" is not"#), "{msg}");
    }

    // ---- times list ----

    #[test]
    fn times_list_is_sorted_and_deduplicated() {
        assert_eq!(
            parse_times(" 15:00 , 3:07,03:07:00,15:00:00 ").unwrap(),
            vec![t("03:07"), t("15:00")]
        );
        assert_eq!(parse_times("12:00").unwrap(), vec![t("12:00")]);
    }

    #[test]
    fn times_list_rejects_empty_list_and_empty_items() {
        for bad in [
            "",
            "  ",
            ",",
            "03:00,",
            ",03:00",
            "03:00,,04:00",
            "03:00, ,04:00",
        ] {
            assert_eq!(
                parse_times(bad),
                Err(ScheduleError::Times(bad.trim().to_string())),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_times("").unwrap_err().to_string(),
            r#""" is not a valid list of times: expected comma-separated HH:MM or HH:MM:SS"#
        );
    }

    #[test]
    fn times_list_names_the_bad_item() {
        assert_eq!(
            parse_times("03:00, 25:00"),
            Err(ScheduleError::TimeOfDay("25:00".into()))
        );
        assert_eq!(
            parse_times("03:00; 04:00"),
            Err(ScheduleError::TimeOfDay("03:00; 04:00".into()))
        );
    }

    #[test]
    fn normalize_times_sorts_dedups_and_drops_subseconds() {
        let half = NaiveTime::from_hms_milli_opt(12, 0, 0, 500).unwrap();
        assert_eq!(
            normalize_times(vec![t("15:00"), half, t("12:00"), t("15:00")]),
            vec![t("12:00"), t("15:00")]
        );
        assert_eq!(normalize_times(vec![]), Vec::<NaiveTime>::new());
    }

    // ---- durations ----

    #[test]
    fn duration_accepts_the_documented_good_examples() {
        for (s, secs) in [
            ("05:00", 300),
            ("00:01", 1),
            ("1:00:00", 3600),
            ("25:00:00", 90000),
            ("90:00", 5400),
            ("8784:00:00", MAX_DURATION_SECS),
            (" 00:05:00 ", 300),
            ("527040:00", MAX_DURATION_SECS),
            ("0000000000000000000000001:00", 60),
        ] {
            assert_eq!(parse_duration(s), Ok(secs), "{s:?}");
        }
    }

    #[test]
    fn duration_rejects_the_documented_bad_examples() {
        for bad in [
            "00:00",
            "1:2:3:4",
            "12:60",
            "",
            "abc",
            "-1:00",
            "01:60:00",
            "8784:00:01",
            ":30",
            "5",
            "00:00:00",
            "8785:00:00",
            "527040:01",
            "1:5",
            "1:00:5",
            "+1:00",
            "1:00:",
            "99999999999999999999999:00",
            "18446744073709551615:00:00",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(ScheduleError::Duration(bad.trim().to_string())),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn duration_error_text_is_exact() {
        assert_eq!(
            parse_duration("12:60").unwrap_err().to_string(),
            r#""12:60" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"#
        );
    }

    #[test]
    fn format_duration_pads_to_two_digits_and_lets_hours_exceed_23() {
        assert_eq!(format_duration(90061), "25:01:01");
        assert_eq!(format_duration(300), "00:05:00");
        assert_eq!(format_duration(1), "00:00:01");
        assert_eq!(format_duration(MAX_DURATION_SECS), "8784:00:00");
    }

    #[test]
    fn format_duration_round_trips_through_parse() {
        for secs in [1, 59, 60, 3599, 3600, 86400, 90061, MAX_DURATION_SECS] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
    }

    #[test]
    fn format_time_is_hh_mm_ss() {
        assert_eq!(format_time(t("3:07")), "03:07:00");
        assert_eq!(format_time(t("23:59:59")), "23:59:59");
    }

    // ---- zones ----

    #[test]
    fn zone_parses_iana_names() {
        assert_eq!(parse_zone("Europe/Stockholm"), Ok(Tz::Europe__Stockholm));
        assert_eq!(parse_zone(" UTC "), Ok(Tz::UTC));
    }

    #[test]
    fn zone_error_text_is_exact() {
        assert_eq!(
            parse_zone("Mars/Olympus").unwrap_err().to_string(),
            r#""Mars/Olympus" is not a known time zone: expected an IANA name such as Europe/Stockholm"#
        );
        assert!(parse_zone("").is_err());
    }

    // ---- describe / effective / override ----

    #[test]
    fn describe_lists_times_or_interval() {
        assert_eq!(times("15:00, 3:07").describe(), "03:07:00, 15:00:00");
        assert_eq!(Schedule::Interval(300).describe(), "every 00:05:00");
        assert_eq!(Schedule::Interval(90061).describe(), "every 25:01:01");
    }

    #[test]
    fn effective_prefers_the_override() {
        let builtin = Schedule::Interval(60);
        let over = times("12:00");
        assert_eq!(effective(Some(&builtin), Some(&over)), Some(&over));
        assert_eq!(effective(Some(&builtin), None), Some(&builtin));
        assert_eq!(effective(None, Some(&over)), Some(&over));
        assert_eq!(effective(None, None), None);
    }

    #[test]
    fn override_equal_to_builtin_is_stored_as_none() {
        let builtin = times("03:00, 15:00");
        let same = Schedule::Times(vec![t("15:00"), t("03:00"), t("15:00")]);
        assert_eq!(normalize_override(Some(&builtin), Some(same)), None);
        assert_eq!(
            normalize_override(
                Some(&Schedule::Interval(300)),
                Some(Schedule::Interval(300))
            ),
            None
        );
        assert_eq!(normalize_override(Some(&builtin), None), None);
    }

    #[test]
    fn override_different_from_builtin_is_kept_normalized() {
        let builtin = times("03:00, 15:00");
        let other = Schedule::Times(vec![t("16:00"), t("03:00"), t("16:00")]);
        assert_eq!(
            normalize_override(Some(&builtin), Some(other)),
            Some(times("03:00, 16:00"))
        );
        assert_eq!(
            normalize_override(
                Some(&Schedule::Interval(300)),
                Some(Schedule::Interval(301))
            ),
            Some(Schedule::Interval(301))
        );
        assert_eq!(
            normalize_override(None, Some(Schedule::Interval(300))),
            Some(Schedule::Interval(300))
        );
    }

    #[test]
    fn override_of_another_kind_is_kept() {
        // 86400 s and "00:00" may coincide in UTC, but they are different
        // rules (elapsed vs wall time), so the override must survive.
        assert_eq!(
            normalize_override(Some(&Schedule::Interval(86400)), Some(times("00:00"))),
            Some(times("00:00"))
        );
        assert_eq!(
            normalize_override(Some(&times("00:00")), Some(Schedule::Interval(86400))),
            Some(Schedule::Interval(86400))
        );
    }

    // ---- DST: resolve_local ----

    /// Checks against chrono-tz itself that `date` has a gap covering
    /// `inside` with offsets `before` -> `after` (seconds east of UTC).
    fn assert_gap(tz: Tz, date: NaiveDate, inside: &str, before: i32, after: i32) {
        let local = date.and_time(t(inside));
        assert!(
            matches!(tz.from_local_datetime(&local), LocalResult::None),
            "{tz} {local} should be in a gap"
        );
        let noon = resolve_local(date, t("12:00"), tz);
        assert_eq!(offset_at(tz, noon - Duration::days(1)), before);
        assert_eq!(offset_at(tz, noon), after);
    }

    fn assert_fold(tz: Tz, date: NaiveDate, inside: &str, before: i32, after: i32) {
        let local = date.and_time(t(inside));
        assert!(
            matches!(tz.from_local_datetime(&local), LocalResult::Ambiguous(..)),
            "{tz} {local} should be in a fold"
        );
        let noon = resolve_local(date, t("12:00"), tz);
        assert_eq!(offset_at(tz, noon - Duration::days(1)), before);
        assert_eq!(offset_at(tz, noon), after);
    }

    #[test]
    fn time_in_spring_forward_gap_runs_at_first_instant_after_gap() {
        let sto = Tz::Europe__Stockholm;
        assert_gap(sto, d(2026, 3, 29), "02:30", 3600, 7200);
        assert_eq!(
            resolve_local(d(2026, 3, 29), t("02:30"), sto),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            resolve_local(d(2026, 3, 29), t("02:00"), sto),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            resolve_local(d(2026, 3, 29), t("03:00"), sto),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            resolve_local(d(2026, 3, 29), t("01:59:59"), sto),
            utc("2026-03-29T00:59:59Z")
        );

        let ny = Tz::America__New_York;
        assert_gap(ny, d(2026, 3, 8), "02:30", -5 * 3600, -4 * 3600);
        assert_eq!(
            resolve_local(d(2026, 3, 8), t("02:30"), ny),
            utc("2026-03-08T07:00:00Z")
        );
    }

    #[test]
    fn time_in_thirty_minute_gap_runs_at_transition_lord_howe() {
        let lh = Tz::Australia__Lord_Howe;
        // 02:00 LHST (+10:30) jumps to 02:30 LHDT (+11:00).
        assert_gap(lh, d(2026, 10, 4), "02:15", 37800, 39600);
        assert!(matches!(
            lh.from_local_datetime(&d(2026, 10, 4).and_time(t("02:30"))),
            LocalResult::Single(_)
        ));
        let at = resolve_local(d(2026, 10, 4), t("02:15"), lh);
        assert_eq!(at, utc("2026-10-03T15:30:00Z"));
        assert_eq!(
            at.with_timezone(&lh).naive_local(),
            d(2026, 10, 4).and_time(t("02:30"))
        );
        assert_eq!(resolve_local(d(2026, 10, 4), t("02:00"), lh), at);
        assert_eq!(resolve_local(d(2026, 10, 4), t("02:29:59"), lh), at);
    }

    #[test]
    fn time_in_gap_and_time_at_gap_end_share_one_run() {
        let lh = Tz::Australia__Lord_Howe;
        let sched = times("02:15, 02:30, 03:00");
        let midnight = resolve_local(d(2026, 10, 4), NaiveTime::MIN, lh);
        assert_eq!(
            runs_after(&sched, midnight, 2, lh),
            vec![utc("2026-10-03T15:30:00Z"), utc("2026-10-03T16:00:00Z")]
        );
    }

    #[test]
    fn gap_fallback_scan_agrees_with_binary_search() {
        for (tz, date, time) in [
            (Tz::Europe__Stockholm, d(2026, 3, 29), "02:30"),
            (Tz::America__New_York, d(2026, 3, 8), "02:00"),
            (Tz::Australia__Lord_Howe, d(2026, 10, 4), "02:15"),
            (Tz::Australia__Lord_Howe, d(2026, 10, 4), "02:29:59"),
        ] {
            let local = date.and_time(t(time));
            let searched = gap_end(local, tz);
            assert!(searched.is_some(), "{tz} {local}");
            assert_eq!(searched, scan_forward(local, tz), "{tz} {local}");
        }
    }

    #[test]
    fn runs_after_long_listing_is_fast_and_complete() {
        let sto = Tz::Europe__Stockholm;
        let start = utc("2026-01-01T00:00:00Z");
        let runs = runs_after(&times("02:30, 12:00"), start, 20_000, sto);
        assert_eq!(runs.len(), 20_000);
        assert!(runs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn time_in_fall_back_fold_runs_at_first_occurrence() {
        let sto = Tz::Europe__Stockholm;
        assert_fold(sto, d(2026, 10, 25), "02:30", 7200, 3600);
        assert_eq!(
            resolve_local(d(2026, 10, 25), t("02:30"), sto),
            utc("2026-10-25T00:30:00Z")
        );

        let ny = Tz::America__New_York;
        assert_fold(ny, d(2026, 11, 1), "01:30", -4 * 3600, -5 * 3600);
        assert_eq!(
            resolve_local(d(2026, 11, 1), t("01:30"), ny),
            utc("2026-11-01T05:30:00Z")
        );

        let lh = Tz::Australia__Lord_Howe;
        // 02:00 LHDT (+11:00) falls back to 01:30 LHST (+10:30).
        assert_fold(lh, d(2026, 4, 5), "01:45", 39600, 37800);
        assert!(matches!(
            lh.from_local_datetime(&d(2026, 4, 5).and_time(t("02:00"))),
            LocalResult::Single(_)
        ));
        assert_eq!(
            resolve_local(d(2026, 4, 5), t("01:45"), lh),
            utc("2026-04-04T14:45:00Z")
        );
    }

    #[test]
    fn time_in_fold_runs_once_not_again_an_hour_later() {
        let sto = Tz::Europe__Stockholm;
        let sched = times("02:30");
        let first = utc("2026-10-25T00:30:00Z");
        let before = utc("2026-10-24T12:00:00Z");
        assert_eq!(next_run(&sched, None, None, before, sto), first);
        let next = next_run(&sched, Some(first), None, first, sto);
        assert_eq!(next, utc("2026-10-26T01:30:00Z"));
        // Even if the runner wakes inside the second pass of 02:30 CET, the
        // slot is not offered again.
        let second_pass = utc("2026-10-25T01:15:00Z");
        assert_eq!(next_run(&sched, None, None, second_pass, sto), next);
    }

    #[test]
    fn two_times_in_one_gap_run_once_that_day() {
        let sto = Tz::Europe__Stockholm;
        let sched = times("02:15, 02:45");
        let start = utc("2026-03-28T23:00:00Z"); // 00:00 local on 03-29
        let runs = runs_after(&sched, start, 3, sto);
        assert_eq!(
            runs,
            vec![
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-30T00:15:00Z"),
                utc("2026-03-30T00:45:00Z"),
            ]
        );
        let first = next_run(&sched, None, None, start, sto);
        assert_eq!(first, runs[0]);
        assert_eq!(next_run(&sched, None, None, first, sto), runs[1]);
    }

    #[test]
    fn time_at_midnight_gap_runs_on_the_following_instant() {
        // America/Santiago springs forward at 24:00 -> 01:00, so a slot at
        // 00:30 of that day lies in the gap at the very start of the date.
        let scl = Tz::America__Santiago;
        let date = (1..=30)
            .map(|day| d(2026, 9, day))
            .find(|date| {
                matches!(
                    scl.from_local_datetime(&date.and_time(t("00:30"))),
                    LocalResult::None
                )
            })
            .expect("Santiago has a midnight gap in September 2026");
        let at = resolve_local(date, t("00:30"), scl);
        assert_eq!(
            at.with_timezone(&scl).naive_local(),
            date.and_time(t("01:00"))
        );
        let sched = times("00:30");
        let day_before = resolve_local(date.pred_opt().unwrap(), t("00:30"), scl);
        assert_eq!(next_run(&sched, None, None, day_before, scl), at);
    }

    // ---- next_run / runs_after for times ----

    #[test]
    fn times_next_run_is_strictly_after_now() {
        let sto = Tz::Europe__Stockholm;
        let sched = times("03:07, 15:00");
        let slot = resolve_local(d(2026, 6, 1), t("03:07"), sto);
        assert_eq!(
            next_run(&sched, None, None, slot, sto),
            resolve_local(d(2026, 6, 1), t("15:00"), sto)
        );
        assert_eq!(
            next_run(&sched, None, None, slot - Duration::seconds(1), sto),
            slot
        );
        let last = resolve_local(d(2026, 6, 1), t("15:00"), sto);
        assert_eq!(
            next_run(&sched, None, None, last, sto),
            resolve_local(d(2026, 6, 2), t("03:07"), sto)
        );
    }

    #[test]
    fn times_next_run_ignores_history() {
        let sto = Tz::Europe__Stockholm;
        let sched = times("12:00");
        let now = utc("2026-06-01T08:00:00Z");
        let expected = utc("2026-06-01T10:00:00Z");
        let long_ago = utc("2020-01-01T00:00:00Z");
        assert_eq!(next_run(&sched, None, None, now, sto), expected);
        assert_eq!(
            next_run(&sched, Some(long_ago), Some(now), now, sto),
            expected
        );
    }

    #[test]
    fn times_next_run_near_local_midnight_uses_the_local_calendar() {
        // 23:30 UTC is already the next local day in Stockholm and still the
        // previous one in New York.
        let now = utc("2026-06-01T23:30:00Z");
        let sched = times("01:00, 20:00");
        assert_eq!(
            next_run(&sched, None, None, now, Tz::Europe__Stockholm),
            utc("2026-06-02T18:00:00Z")
        );
        assert_eq!(
            next_run(&sched, None, None, now, Tz::America__New_York),
            utc("2026-06-02T00:00:00Z")
        );
    }

    #[test]
    fn empty_times_never_run() {
        let sched = Schedule::Times(vec![]);
        let now = utc("2026-06-01T00:00:00Z");
        assert_eq!(
            next_run(&sched, None, None, now, Tz::UTC),
            DateTime::<Utc>::MAX_UTC
        );
        assert!(runs_after(&sched, now, 5, Tz::UTC).is_empty());
    }

    #[test]
    fn runs_after_zero_count_is_empty() {
        let now = utc("2026-06-01T00:00:00Z");
        assert!(runs_after(&times("12:00"), now, 0, Tz::UTC).is_empty());
        assert!(runs_after(&Schedule::Interval(60), now, 0, Tz::UTC).is_empty());
    }

    #[test]
    fn runs_after_lists_successive_slots_across_days() {
        let sto = Tz::Europe__Stockholm;
        let sched = times("03:07, 15:00");
        let after = utc("2026-06-01T12:00:00Z"); // 14:00 local
        assert_eq!(
            runs_after(&sched, after, 4, sto),
            vec![
                utc("2026-06-01T13:00:00Z"),
                utc("2026-06-02T01:07:00Z"),
                utc("2026-06-02T13:00:00Z"),
                utc("2026-06-03T01:07:00Z"),
            ]
        );
    }

    /// The last second of 2025 in `tz`: the walks over 2026 start there.
    fn just_before_2026(tz: Tz) -> DateTime<Utc> {
        resolve_local(d(2026, 1, 1), NaiveTime::MIN, tz) - Duration::seconds(1)
    }

    /// Every run of `sched` in 2026 (local time in `tz`), computed the way
    /// the runner does: each from the one before, as if it had just run.
    fn runs_over_2026(sched: &Schedule, tz: Tz) -> Vec<DateTime<Utc>> {
        let start = just_before_2026(tz);
        let end = resolve_local(d(2027, 1, 1), NaiveTime::MIN, tz);
        let mut runs = Vec::new();
        let mut now = start;
        loop {
            let next = next_run(sched, runs.last().copied(), None, now, tz);
            assert!(next > now, "{tz} {sched:?}: {next} not after {now}");
            if next >= end {
                return runs;
            }
            runs.push(next);
            now = next;
            assert!(runs.len() < 40_000, "runaway");
        }
    }

    /// Runs a daily job the way the runner does (now = previous run) over
    /// all of 2026 and checks every local day gets each slot exactly once.
    fn assert_daily_for_a_year(tz: Tz, list: &str) {
        let sched = times(list);
        let Schedule::Times(slots) = &sched else {
            unreachable!()
        };
        let runs = runs_over_2026(&sched, tz);
        let start = just_before_2026(tz);

        let mut per_day: BTreeMap<NaiveDate, Vec<DateTime<Utc>>> = BTreeMap::new();
        for run in &runs {
            per_day
                .entry(run.with_timezone(&tz).date_naive())
                .or_default()
                .push(*run);
        }
        let mut total = 0;
        let mut date = d(2026, 1, 1);
        while date < d(2027, 1, 1) {
            let got = per_day.get(&date).cloned().unwrap_or_default();
            let mut want: Vec<DateTime<Utc>> =
                slots.iter().map(|s| resolve_local(date, *s, tz)).collect();
            // A gap slot and the slot at the gap's end share one instant.
            want.dedup();
            assert_eq!(got, want, "{tz} {date}: {list}");
            total += want.len();
            date = date + Days::new(1);
        }
        assert_eq!(per_day.len(), 365, "{tz}");
        assert_eq!(runs.len(), total, "{tz}");
        assert!(
            total >= 365 * slots.len() - 1,
            "{tz}: at most one merge a year"
        );
        assert_eq!(runs_after(&sched, start, runs.len(), tz), runs, "{tz}");

        // Each single slot on its own is also exactly daily.
        for slot in slots {
            let one = Schedule::Times(vec![*slot]);
            let got = runs_after(&one, start, 365, tz);
            let days: Vec<NaiveDate> = got
                .iter()
                .map(|r| r.with_timezone(&tz).date_naive())
                .collect();
            let want: Vec<NaiveDate> = d(2026, 1, 1).iter_days().take(365).collect();
            assert_eq!(days, want, "{tz} {slot}");
        }
    }

    #[test]
    fn daily_job_runs_once_per_day_for_a_year_in_stockholm() {
        assert_daily_for_a_year(Tz::Europe__Stockholm, "01:30, 02:30, 12:00");
    }

    #[test]
    fn daily_job_runs_once_per_day_for_a_year_in_new_york() {
        assert_daily_for_a_year(Tz::America__New_York, "01:30, 02:30, 12:00");
    }

    #[test]
    fn daily_job_runs_once_per_day_for_a_year_in_lord_howe() {
        assert_daily_for_a_year(
            Tz::Australia__Lord_Howe,
            "01:30, 01:45, 02:15, 02:30, 12:00",
        );
    }

    #[test]
    fn daily_job_runs_once_per_day_for_a_year_at_midnight() {
        assert_daily_for_a_year(Tz::Europe__Stockholm, "00:00, 23:59:59");
        assert_daily_for_a_year(Tz::America__New_York, "00:00, 23:59:59");
    }

    // ---- cron ----

    fn cron(expr: &str) -> Schedule {
        Schedule::Cron(parse_cron(expr).unwrap())
    }

    /// Runs a cron job the way the runner does (now = previous run) over all
    /// of 2026 and checks the runs against every wall-clock slot of the year:
    /// each slot's run is the first instant the clock reaches it (never
    /// early, the first occurrence in a fold), the runs are exactly the
    /// slots' instants (never twice, never skipped; slots sharing a gap share
    /// a run), and they strictly increase.
    fn assert_cron_for_a_year(tz: Tz, expr: &str) {
        let sched = cron(expr);
        let Schedule::Cron(c) = &sched else {
            unreachable!()
        };
        let runs = runs_over_2026(&sched, tz);
        let start = just_before_2026(tz);
        let mut want = Vec::new();
        for date in d(2026, 1, 1).iter_days().take_while(|x| *x < d(2027, 1, 1)) {
            if !c.matches_date(date) {
                continue;
            }
            for h in c.hours() {
                for m in c.minutes() {
                    for sec in c.seconds() {
                        let wall = date.and_hms_opt(h, m, sec).unwrap();
                        let at = resolve_local(date, wall.time(), tz);
                        let shown = |i: DateTime<Utc>| i.with_timezone(&tz).naive_local();
                        assert!(shown(at) >= wall, "{tz} {expr}: {wall} early at {at}");
                        assert!(
                            shown(at - Duration::seconds(1)) < wall,
                            "{tz} {expr}: {wall} late at {at}"
                        );
                        if let LocalResult::Ambiguous(a, b) = tz.from_local_datetime(&wall) {
                            assert_eq!(at, a.min(b).with_timezone(&Utc), "{tz} {expr}: {wall}");
                        }
                        want.push(at);
                    }
                }
            }
        }
        let slots = want.len();
        want.dedup();
        assert!(
            slots - want.len() <= 4 * 60,
            "{tz} {expr}: merges only in a gap"
        );
        assert!(runs.windows(2).all(|w| w[0] < w[1]), "{tz} {expr}");
        assert_eq!(runs.len(), want.len(), "{tz} {expr}");
        assert_eq!(runs, want, "{tz} {expr}");
        let n = 50.min(runs.len());
        assert_eq!(runs_after(&sched, start, n, tz), runs[..n]);
    }

    const YEAR_EXPRESSIONS: [&str; 5] = [
        "*/15 * * * *",
        "30 2 * * *",
        "0 9 * * MON-FRI",
        "0 0 L * *",
        "*/30 1-3 * * *",
    ];

    #[test]
    fn cron_slots_for_a_year_in_stockholm() {
        for expr in YEAR_EXPRESSIONS {
            assert_cron_for_a_year(Tz::Europe__Stockholm, expr);
        }
    }

    #[test]
    fn cron_slots_for_a_year_in_new_york() {
        for expr in YEAR_EXPRESSIONS {
            assert_cron_for_a_year(Tz::America__New_York, expr);
        }
    }

    #[test]
    fn cron_slots_for_a_year_in_lord_howe() {
        for expr in YEAR_EXPRESSIONS {
            assert_cron_for_a_year(Tz::Australia__Lord_Howe, expr);
        }
        assert_cron_for_a_year(Tz::Australia__Lord_Howe, "*/10 1-2 * * *");
    }

    #[test]
    fn cron_slots_for_a_year_in_utc() {
        for expr in YEAR_EXPRESSIONS {
            assert_cron_for_a_year(Tz::UTC, expr);
        }
    }

    #[test]
    fn cron_slots_in_a_gap_run_once_at_its_end_and_a_fold_runs_once() {
        let sto = Tz::Europe__Stockholm;
        let sched = cron("*/30 1-3 * * *");
        // Spring forward 2026-03-29: 02:00 and 02:30 do not exist.
        let runs = runs_after(&sched, utc("2026-03-28T23:00:00Z"), 5, sto);
        let shown: Vec<String> = runs.iter().map(|r| human_instant(*r, sto)).collect();
        assert_eq!(
            shown,
            [
                "2026-03-29 01:00:00 CET",
                "2026-03-29 01:30:00 CET",
                "2026-03-29 03:00:00 CEST",
                "2026-03-29 03:30:00 CEST",
                "2026-03-30 01:00:00 CEST",
            ]
        );
        // Fall back 2026-10-25: 02:00 and 02:30 come twice; once each.
        let runs = runs_after(&sched, utc("2026-10-24T22:00:00Z"), 7, sto);
        let shown: Vec<String> = runs.iter().map(|r| human_instant(*r, sto)).collect();
        assert_eq!(
            shown,
            [
                "2026-10-25 01:00:00 CEST",
                "2026-10-25 01:30:00 CEST",
                "2026-10-25 02:00:00 CEST",
                "2026-10-25 02:30:00 CEST",
                "2026-10-25 03:00:00 CET",
                "2026-10-25 03:30:00 CET",
                "2026-10-26 01:00:00 CET",
            ]
        );
    }

    #[test]
    fn cron_last_day_and_leap_day_and_seconds() {
        let runs = runs_after(&cron("0 0 L * *"), utc("2026-11-27T00:00:00Z"), 4, Tz::UTC);
        assert_eq!(
            runs,
            [
                utc("2026-11-30T00:00:00Z"),
                utc("2026-12-31T00:00:00Z"),
                utc("2027-01-31T00:00:00Z"),
                utc("2027-02-28T00:00:00Z"),
            ]
        );
        assert_eq!(
            next_run(
                &cron("0 0 29 2 *"),
                None,
                None,
                utc("2026-11-27T00:00:00Z"),
                Tz::UTC
            ),
            utc("2028-02-29T00:00:00Z")
        );
        assert_eq!(
            runs_after(
                &cron("*/20 * * * * *"),
                utc("2026-11-27T00:00:05Z"),
                3,
                Tz::UTC
            ),
            [
                utc("2026-11-27T00:00:20Z"),
                utc("2026-11-27T00:00:40Z"),
                utc("2026-11-27T00:01:00Z"),
            ]
        );
        // A long listing of a rare expression is complete.
        let leap = runs_after(
            &cron("0 0 29 2 *"),
            utc("2026-11-27T00:00:00Z"),
            30,
            Tz::UTC,
        );
        assert_eq!(leap.len(), 30);
        assert_eq!(leap[29], utc("2148-02-29T00:00:00Z"));
        // Every second of the day stays quick.
        let many = runs_after(
            &cron("* * * * * *"),
            utc("2026-11-27T12:00:00Z"),
            1000,
            Tz::UTC,
        );
        assert_eq!(many.len(), 1000);
        assert_eq!(many[999], utc("2026-11-27T12:16:40Z"));
    }

    #[test]
    fn cron_override_equal_to_builtin_is_no_override_and_describes_itself() {
        assert_eq!(
            normalize_override(Some(&cron("@daily")), Some(cron("0 0 * * *"))),
            None
        );
        assert_eq!(cron("0 9 * * MON-FRI").describe(), "cron 0 9 * * MON-FRI");
        assert_eq!(
            parse_cron("0 0 30 2 *").unwrap_err().to_string(),
            "\"0 0 30 2 *\" is not a valid cron expression: it never matches: no month of the month field has a day of the day-of-month field"
        );
    }

    // ---- intervals ----

    #[test]
    fn interval_next_run_uses_later_of_last_run_and_last_skip() {
        let run = utc("2026-06-01T10:00:00Z");
        let skip = utc("2026-06-01T10:02:00Z");
        let now = utc("2026-06-01T12:00:00Z");
        let tz = Tz::Europe__Stockholm;
        let every5 = Schedule::Interval(300);
        assert_eq!(
            next_run(&every5, Some(run), Some(skip), now, tz),
            utc("2026-06-01T10:07:00Z")
        );
        assert_eq!(
            next_run(&every5, Some(skip), Some(run), now, tz),
            utc("2026-06-01T10:07:00Z")
        );
        assert_eq!(
            next_run(&every5, Some(run), None, now, tz),
            utc("2026-06-01T10:05:00Z")
        );
        assert_eq!(
            next_run(&every5, None, Some(skip), now, tz),
            utc("2026-06-01T10:07:00Z")
        );
    }

    #[test]
    fn interval_next_run_without_history_is_now_plus_interval() {
        let now = utc("2026-06-01T12:00:00Z");
        assert_eq!(
            next_run(&Schedule::Interval(300), None, None, now, Tz::UTC),
            utc("2026-06-01T12:05:00Z")
        );
    }

    #[test]
    fn one_hour_interval_across_spring_forward_is_exactly_3600_seconds() {
        let sto = Tz::Europe__Stockholm;
        let hourly = Schedule::Interval(3600);
        let mut last = utc("2026-03-28T22:00:00Z");
        let mut runs = vec![last];
        for _ in 0..6 {
            last = next_run(&hourly, Some(last), None, last, sto);
            runs.push(last);
        }
        for pair in runs.windows(2) {
            assert_eq!((pair[1] - pair[0]).num_seconds(), 3600);
        }
        let hours: Vec<u32> = runs.iter().map(|r| r.with_timezone(&sto).hour()).collect();
        assert_eq!(hours, vec![23, 0, 1, 3, 4, 5, 6]);
        assert_eq!(runs_after(&hourly, runs[0], 6, sto), runs[1..].to_vec());
    }

    #[test]
    fn day_long_interval_across_dst_is_elapsed_time_not_wall_time() {
        let sto = Tz::Europe__Stockholm;
        let daily = Schedule::Interval(parse_duration("24:00:00").unwrap());
        let before = resolve_local(d(2026, 3, 28), t("12:00"), sto);
        let after = next_run(&daily, Some(before), None, before, sto);
        assert_eq!((after - before).num_seconds(), 86400);
        assert_eq!(
            after.with_timezone(&sto).naive_local(),
            d(2026, 3, 29).and_time(t("13:00"))
        );
    }

    #[test]
    fn runs_after_for_interval_steps_from_after() {
        let after = utc("2026-06-01T12:00:00Z");
        assert_eq!(
            runs_after(&Schedule::Interval(90), after, 3, Tz::UTC),
            vec![
                utc("2026-06-01T12:01:30Z"),
                utc("2026-06-01T12:03:00Z"),
                utc("2026-06-01T12:04:30Z"),
            ]
        );
    }

    #[test]
    fn zero_interval_is_clamped_rather_than_spinning() {
        let now = utc("2026-06-01T12:00:00Z");
        assert_eq!(
            next_run(&Schedule::Interval(0), Some(now), None, now, Tz::UTC),
            now + Duration::seconds(1)
        );
    }

    #[test]
    fn interval_at_end_of_time_saturates() {
        let end = DateTime::<Utc>::MAX_UTC;
        assert_eq!(
            next_run(&Schedule::Interval(60), Some(end), None, end, Tz::UTC),
            end
        );
        assert!(runs_after(&Schedule::Interval(60), end, 3, Tz::UTC).is_empty());
    }

    #[test]
    fn resolve_local_is_total_at_the_ends_of_the_calendar() {
        // Must not panic even where offsets push past chrono's range.
        for tz in [Tz::Pacific__Kiritimati, Tz::Etc__GMTPlus12, Tz::UTC] {
            let _ = resolve_local(NaiveDate::MAX, t("23:59:59"), tz);
            let _ = resolve_local(NaiveDate::MIN, NaiveTime::MIN, tz);
            let _ = next_run(&times("12:00"), None, None, DateTime::<Utc>::MAX_UTC, tz);
            let _ = runs_after(&times("12:00"), DateTime::<Utc>::MIN_UTC, 2, tz);
        }
    }

    fn jitter(name: &str, secs: u32) -> Jitter<'_> {
        Jitter { name, secs }
    }

    #[test]
    fn a_jitter_offset_is_below_the_jitter_and_the_same_every_time() {
        let j = jitter("nightly_report", 300);
        let slot = utc("2026-03-29T01:00:00Z");
        let first = j.offset(slot);
        assert_eq!(first, j.offset(slot), "deterministic");
        // Pinned: every runner, of every version, must compute this value.
        assert_eq!(first.num_milliseconds(), FNV_PINNED_MS);
        let offsets: Vec<i64> = (0..500)
            .map(|k| j.offset(slot + Duration::hours(k)).num_milliseconds())
            .collect();
        assert!(offsets.iter().all(|o| (0..300_000).contains(o)));
        // Spread over the range, not stuck at one value.
        assert!(offsets.iter().min().unwrap() < &30_000);
        assert!(offsets.iter().max().unwrap() > &270_000);
        // Another job, other offsets: a fleet does not start at once.
        assert_ne!(jitter("other_job", 300).offset(slot), first);
        assert_eq!(jitter("x", 0).offset(slot), Duration::zero());
    }

    /// FNV-1a of "nightly_report", 0, and 2026-03-29T01:00:00Z's Unix
    /// milliseconds, modulo 300,000 ms, as computed independently (Python:
    /// the FNV-1a loop over those bytes).
    const FNV_PINNED_MS: i64 = 295_548;

    #[test]
    fn jittered_runs_keep_their_slots_across_dst_days_in_several_zones() {
        // (zone, a DST day there)
        let days = [
            (Tz::Europe__Stockholm, "2026-03-29T00:00:00Z"),
            (Tz::Europe__Stockholm, "2026-10-25T00:00:00Z"),
            (Tz::America__New_York, "2026-03-08T05:00:00Z"),
            (Tz::America__New_York, "2026-11-01T04:00:00Z"),
            (Tz::Australia__Lord_Howe, "2026-04-04T13:00:00Z"),
        ];
        for (tz, start) in days {
            // A quarter past: no slot within the jitter before it.
            let start = utc(start) + Duration::minutes(15);
            for schedule in [
                times("01:30,02:30,03:30"),
                Schedule::Cron(parse_cron("*/30 * * * *").unwrap()),
            ] {
                let j = jitter("dst_job", 600);
                let plain = runs_after(&schedule, start, 12, tz);
                let jittered = runs_after_jittered(&schedule, start, 12, tz, j);
                assert_eq!(jittered.len(), 12, "{tz} {schedule:?}");
                for (slot, run) in plain.iter().zip(&jittered) {
                    let delay = *run - *slot;
                    assert!(
                        delay >= Duration::zero() && delay < Duration::seconds(600),
                        "{tz}: {slot} -> {run}"
                    );
                    assert_eq!(*run, j.apply(*slot));
                }
                // The next run from any instant is the first delayed slot
                // after it, a slot passed by less than its delay included.
                for (slot, run) in plain.iter().zip(&jittered) {
                    let just_after_slot = *slot + Duration::milliseconds(1);
                    if *run > just_after_slot {
                        assert_eq!(
                            next_run_jittered(&schedule, None, None, just_after_slot, tz, j),
                            *run,
                            "{tz}"
                        );
                    }
                    let at_run = *run;
                    let next = next_run_jittered(&schedule, None, None, at_run, tz, j);
                    assert!(
                        next > at_run,
                        "{tz}: the run at {at_run} comes again at {next}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_run_a_little_late_does_not_lose_a_neighbour_its_jitter_brought_close() {
        // Every minute, up to a minute's jitter, over DST days in several
        // zones (a Stockholm spring day has a 02:00–03:00 gap, no slots).
        let days = [
            (Tz::UTC, "2026-12-07T00:00:00Z"),
            (Tz::Europe__Stockholm, "2026-03-29T00:00:00Z"),
            (Tz::America__New_York, "2026-11-01T04:00:00Z"),
            (Tz::Australia__Lord_Howe, "2026-04-04T13:00:00Z"),
        ];
        let every_minute = cron("* * * * *");
        let j = jitter("fleet_job_0042", 60);
        let mut close = 0;
        for (tz, start) in days {
            let slots = runs_after(&every_minute, utc(start), 6 * 60, tz);
            for pair in slots.windows(2) {
                let (this, next) = (pair[0], pair[1]);
                let (due, next_due) = (j.apply(this), j.apply(next));
                let passed =
                    |started| next_slot_passed_while_late(&every_minute, due, started, tz, j);
                // Before the next slot's delayed instant: still ahead, the
                // usual rule finds it.
                assert!(!passed(next_due - Duration::milliseconds(1)), "{tz} {this}");
                // At it: owed exactly when the run was then late by less
                // than the gap, as a run without jitter would be.
                assert_eq!(
                    passed(next_due),
                    next_due - due < next - this,
                    "{tz} {this}"
                );
                // Late by the gap or more: the downtime rule, nothing owed.
                assert!(!passed(due + (next - this)), "{tz} {this}");
                // A run at an instant that is no delayed slot (run now).
                assert!(
                    !next_slot_passed_while_late(
                        &every_minute,
                        due + Duration::milliseconds(1),
                        next_due,
                        tz,
                        j
                    ),
                    "{tz} {this}"
                );
                if next_due - due < Duration::seconds(5) {
                    close += 1;
                }
            }
        }
        // Such neighbours occur (about 5²/2·60² of pairs come within 5 s).
        assert!(close > 0, "no pair of slots within 5 s");
        // Without a jitter, or for an interval (it counts from the run's
        // end), nothing is ever owed this way.
        let slot = utc("2026-12-07T10:00:00Z");
        let late = slot + Duration::seconds(30);
        assert!(!next_slot_passed_while_late(
            &every_minute,
            slot,
            late,
            Tz::UTC,
            jitter("x", 0)
        ));
        assert!(!next_slot_passed_while_late(
            &Schedule::Interval(60),
            slot,
            late,
            Tz::UTC,
            j
        ));
    }

    #[test]
    fn an_interval_run_is_delayed_from_its_slot() {
        let j = jitter("poll", 20);
        let last = utc("2026-11-01T10:00:00Z");
        let next = next_run_jittered(&Schedule::Interval(60), Some(last), None, last, Tz::UTC, j);
        let slot = last + Duration::seconds(60);
        assert_eq!(next, slot + j.offset(slot));
        assert!(next - slot < Duration::seconds(20));
        let listed = runs_after_jittered(&Schedule::Interval(60), last, 3, Tz::UTC, j);
        assert_eq!(listed[0], next);
        assert_eq!(listed[1], j.apply(next + Duration::seconds(60)));
    }

    #[test]
    fn the_shortest_gap_bounds_a_jitter() {
        assert_eq!(shortest_gap(&Schedule::Interval(90), Tz::UTC), Some(90));
        assert_eq!(
            shortest_gap(&times("23:50,00:10,12:00"), Tz::UTC),
            Some(20 * 60)
        );
        assert_eq!(shortest_gap(&times("04:30"), Tz::UTC), Some(23 * 3600));
        assert_eq!(shortest_gap(&Schedule::Times(Vec::new()), Tz::UTC), None);
        let every_5 = Schedule::Cron(parse_cron("*/5 * * * *").unwrap());
        assert_eq!(shortest_gap(&every_5, Tz::Europe__Stockholm), Some(300));
        let workdays = Schedule::Cron(parse_cron("0 9,17 * * 1-5").unwrap());
        assert_eq!(shortest_gap(&workdays, Tz::UTC), Some(8 * 3600));
    }
}
