//! The filters of the web page (§23), as a query string: the frontpage's
//! `?q=TEXT&state=STATE&app=APP`, the history's `/runs?job=NAME&state=STATE&page=N`
//! and the audit's `/audit?job=NAME&page=N`. A filter lives in the URL only,
//! so a page of results can be linked, reloaded and paged with it kept.
//!
//! A value that is not one of those a filter takes (a `state` that is no
//! state, a `page` that is no page) is refused with HTTP 400 and its text, as
//! a rejected form is (§16); an empty value is no filter, which is what an
//! untouched field of the filter form sends.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::BadInput;
use crate::job::{Job, RunState};

/// The states a job can be filtered by on the frontpage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Failed,
    Running,
    Overdue,
    Paused,
    Disabled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Failed,
        JobState::Running,
        JobState::Overdue,
        JobState::Paused,
        JobState::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Failed => "failed",
            JobState::Running => "running",
            JobState::Overdue => "overdue",
            JobState::Paused => "paused",
            JobState::Disabled => "disabled",
        }
    }

    /// Whether `job` is in this state at `now` (`held`: overdue means
    /// nothing while the jobs are held, as in `jobs status`).
    pub fn holds(self, job: &Job, now: DateTime<Utc>, held: bool) -> bool {
        match self {
            JobState::Failed => job.is_failing(),
            JobState::Running => job.running(),
            JobState::Overdue => job.is_overdue(now, held),
            JobState::Paused => job.paused_at(now).is_some(),
            JobState::Disabled => !job.enabled,
        }
    }
}

/// The query string as sent: every field text, checked by the `parse`s.
#[derive(Debug, Default, Deserialize)]
pub struct RawQuery {
    pub q: Option<String>,
    pub state: Option<String>,
    pub app: Option<String>,
    pub job: Option<String>,
    pub page: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A text filter: the value, trimmed, or empty.
fn text_of(value: &Option<String>) -> String {
    given(value).unwrap_or("").to_string()
}

fn refused(key: &str, value: &str, expected: &str) -> anyhow::Error {
    BadInput::new(format!("{key} \"{value}\": expected {expected}")).into()
}

/// The `state` of the query, one of `all` by its name, or none when empty.
fn state_of<T: Copy>(
    raw: &RawQuery,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> anyhow::Result<Option<T>> {
    let Some(text) = given(&raw.state) else {
        return Ok(None);
    };
    match all.iter().copied().find(|s| name(*s) == text) {
        Some(state) => Ok(Some(state)),
        None => {
            let names: Vec<&str> = all.iter().map(|s| name(*s)).collect();
            Err(refused(
                "state",
                text,
                &format!("one of {}", names.join(", ")),
            ))
        }
    }
}

fn page_of(raw: &RawQuery) -> anyhow::Result<u32> {
    match given(&raw.page) {
        None => Ok(1),
        Some(text) => crate::input::parse_page(text)
            .map_err(|problem| BadInput::new(format!("page \"{text}\": {problem}")).into()),
    }
}

/// `key=value&…` of the pairs whose value is not empty, encoded.
fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        if !value.is_empty() {
            out.append_pair(key, value);
        }
    }
    out.finish()
}

/// A page number as a link writes it: none for the first page.
fn page_text(page: u32) -> String {
    if page > 1 {
        page.to_string()
    } else {
        String::new()
    }
}

fn location(path: &str, pairs: &[(&str, &str)]) -> String {
    let query = query_string(pairs);
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

/// The frontpage's filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Part of the name or the description, any case.
    pub q: String,
    pub state: Option<JobState>,
    /// The app, exactly.
    pub app: String,
    /// The page of the jobs it keeps (1 when not given; 0 reads as 1).
    pub page: u32,
}

impl JobFilter {
    pub fn parse(raw: &RawQuery) -> anyhow::Result<JobFilter> {
        let state = state_of(raw, &JobState::ALL, JobState::as_str)?;
        Ok(JobFilter {
            q: text_of(&raw.q),
            state,
            app: text_of(&raw.app),
            page: page_of(raw)?,
        })
    }

    /// No filter at all (whatever the page).
    pub fn is_empty(&self) -> bool {
        self.q.is_empty() && self.state.is_none() && self.app.is_empty()
    }

    /// This filter's page `page`.
    pub fn page_location(&self, page: u32) -> String {
        let page = page_text(page);
        location(
            "/",
            &[
                ("q", &self.q),
                ("state", self.state.map_or("", JobState::as_str)),
                ("app", &self.app),
                ("page", &page),
            ],
        )
    }

    pub fn keeps(&self, job: &Job, now: DateTime<Utc>, held: bool) -> bool {
        let q = self.q.to_lowercase();
        (q.is_empty()
            || job.name.to_lowercase().contains(&q)
            || job.description.to_lowercase().contains(&q))
            && (self.app.is_empty() || job.app == self.app)
            && self.state.is_none_or(|state| state.holds(job, now, held))
    }

    /// The frontpage with this filter and `state` instead of its own.
    pub fn with_state(&self, state: JobState) -> String {
        location(
            "/",
            &[
                ("q", &self.q),
                ("state", state.as_str()),
                ("app", &self.app),
            ],
        )
    }
}

/// `/runs`' filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub job: String,
    pub state: Option<RunState>,
    pub page: u32,
}

impl RunFilter {
    pub fn parse(raw: &RawQuery) -> anyhow::Result<RunFilter> {
        let state = state_of(raw, &RunState::ALL, RunState::as_str)?;
        Ok(RunFilter {
            job: text_of(&raw.job),
            state,
            page: page_of(raw)?,
        })
    }

    /// This filter's page `page`.
    pub fn page_location(&self, page: u32) -> String {
        let page = page_text(page);
        location(
            "/runs",
            &[
                ("job", &self.job),
                ("state", self.state.map_or("", RunState::as_str)),
                ("page", &page),
            ],
        )
    }
}

/// `/audit`'s filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub job: String,
    pub page: u32,
}

impl AuditFilter {
    pub fn parse(raw: &RawQuery) -> anyhow::Result<AuditFilter> {
        Ok(AuditFilter {
            job: text_of(&raw.job),
            page: page_of(raw)?,
        })
    }

    pub fn page_location(&self, page: u32) -> String {
        let page = page_text(page);
        location("/audit", &[("job", &self.job), ("page", &page)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawQuery {
        let text = query_string(pairs);
        serde_urlencoded_like(&text)
    }

    /// What axum's `Query` makes of a query string.
    fn serde_urlencoded_like(text: &str) -> RawQuery {
        let mut raw = RawQuery::default();
        for (key, value) in url::form_urlencoded::parse(text.as_bytes()) {
            let value = Some(value.into_owned());
            match key.as_ref() {
                "q" => raw.q = value,
                "state" => raw.state = value,
                "app" => raw.app = value,
                "job" => raw.job = value,
                "page" => raw.page = value,
                _ => {}
            }
        }
        raw
    }

    #[test]
    fn a_filter_is_kept_in_the_links_it_makes() {
        let filter = RunFilter::parse(&raw(&[("job", "a&b"), ("state", "failed")])).unwrap();
        assert_eq!(
            filter.page_location(2),
            "/runs?job=a%26b&state=failed&page=2"
        );
        assert_eq!(filter.page_location(1), "/runs?job=a%26b&state=failed");
        let filter = AuditFilter::parse(&raw(&[("page", "3")])).unwrap();
        assert_eq!(filter.page, 3);
        assert_eq!(filter.page_location(2), "/audit?page=2");
        let jobs = JobFilter::parse(&raw(&[("q", "<x> \""), ("app", "shop")])).unwrap();
        assert_eq!(
            jobs.with_state(JobState::Paused),
            "/?q=%3Cx%3E+%22&state=paused&app=shop"
        );
    }

    #[test]
    fn an_empty_value_is_no_filter_and_a_wrong_one_is_refused() {
        let filter = JobFilter::parse(&raw(&[])).unwrap();
        assert!(filter.is_empty());
        let empty = RawQuery {
            state: Some(" ".into()),
            page: Some(String::new()),
            ..RawQuery::default()
        };
        assert!(JobFilter::parse(&empty).unwrap().is_empty());
        assert_eq!(RunFilter::parse(&empty).unwrap().page, 1);
        let error = JobFilter::parse(&raw(&[("state", "broken")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "state \"broken\": expected one of failed, running, overdue, paused, disabled"
        );
        let error = RunFilter::parse(&raw(&[("state", "overdue")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "state \"overdue\": expected one of running, succeeded, failed, timed_out, interrupted"
        );
        assert!(AuditFilter::parse(&raw(&[("page", "0")])).is_err());
    }
}
