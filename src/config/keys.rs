//! The values of `manage.toml`'s keys: what a duration, a list of times, a
//! zone, a bounded count or a table is, each read by one function here, so a
//! key means the same thing wherever it appears.
//!
//! Every value is first taken as a `toml::Value`, whatever its type, so that
//! a problem says what was found in the words the configuration has always
//! used ("expected a string, found the integer 5") rather than serde's. The
//! functions are for `#[serde(deserialize_with)]` on an optional field: a
//! key that is absent is `None` through `#[serde(default)]`, one that is
//! present is `Some` or an error.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::de::{self, value::MapAccessDeserializer, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::schedule::{self, Cron};

/// Take any value and `convert` it; its problem becomes the error.
fn value_of<'de, D, T>(
    d: D,
    convert: impl FnOnce(toml::Value) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let value = toml::Value::deserialize(d)?;
    convert(value).map_err(de::Error::custom)
}

/// [`value_of`] for a key that is there (an absent one is `None` by default).
fn read<'de, D, T>(
    d: D,
    convert: impl FnOnce(toml::Value) -> Result<T, String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    value_of(d, convert).map(Some)
}

/// How a value is named in a problem.
pub(super) fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string \"{s}\""),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date-time {d}"),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn string(value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s),
        other => Err(format!("expected a string, found {}", describe(&other))),
    }
}

/// Any string.
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    read(d, string)
}

/// `true` or `false`.
pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    read(d, |value| match value {
        toml::Value::Boolean(b) => Ok(b),
        other => Err(format!(
            "expected true or false, found {}",
            describe(&other)
        )),
    })
}

/// A whole number in `min..=max`.
fn count(value: toml::Value, min: u32, max: u32) -> Result<u32, String> {
    match value {
        toml::Value::Integer(i) => u32::try_from(i)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("{i} is out of range: expected an integer from {min} to {max}")),
        other => Err(format!("expected an integer, found {}", describe(&other))),
    }
}

/// `history_retention_days`.
pub(super) fn retention_days<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, |v| count(v, 1, super::MAX_RETENTION_DAYS))
}

/// `max_output_bytes`: at most 1 GiB.
pub(super) fn output_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, |v| count(v, 1, 1 << 30))
}

/// `runner.max_parallel`.
pub(super) fn max_parallel<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, |v| count(v, 1, 1024))
}

/// A job's `retries` (§13).
pub(super) fn retries<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, |v| count(v, 0, super::MAX_RETRIES))
}

/// A job's `alert_after` (§14), in the range `jobs configure` takes too.
pub(super) fn alert_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let (min, max) = (crate::job::MIN_ALERT_AFTER, crate::job::MAX_ALERT_AFTER);
    let bound = |n: i32| u32::try_from(n).unwrap_or(0);
    read(d, |v| count(v, bound(min), bound(max)))
}

/// `MM:SS` or `HH:MM:SS`, in seconds.
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    read(d, |v| {
        schedule::parse_duration(&string(v)?).map_err(|e| e.to_string())
    })
}

/// A job's `times`: at least one `HH:MM[:SS]`, sorted and without repeats.
pub(super) fn times<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<NaiveTime>>, D::Error> {
    let expected = "expected an array of \"HH:MM\" strings";
    read(d, |value| {
        let toml::Value::Array(items) = value else {
            return Err(format!("{expected}, found {}", describe(&value)));
        };
        let times = items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => {
                    schedule::parse_time_of_day(&s).map_err(|e| e.to_string())
                }
                other => Err(format!("{expected}, found {} in it", describe(&other))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if times.is_empty() {
            return Err("expected at least one time of day".into());
        }
        Ok(schedule::normalize_times(times))
    })
}

/// A cron expression (§11).
pub(super) fn cron<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cron>, D::Error> {
    read(d, |v| {
        schedule::parse_cron(&string(v)?).map_err(|e| e.to_string())
    })
}

/// An IANA zone name, from a value already taken (the file's own
/// `timezone`, which is read only when the environment does not set one).
pub(super) fn zone_of(value: toml::Value) -> Result<Tz, String> {
    schedule::parse_zone(&string(value)?).map_err(|e| e.to_string())
}

/// An IANA zone name.
pub(super) fn zone<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
    read(d, zone_of)
}

/// `web.listen`: where `manage web` listens.
pub(super) fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    read(d, |v| {
        let text = string(v)?;
        super::parse_listen(&text).map_err(|problem| format!("\"{text}\": {problem}"))
    })
}

/// `web.trusted_proxy_header`: an HTTP header name.
pub(super) fn header_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    read(d, |v| {
        let text = string(v)?;
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if !text.is_empty() && text.chars().all(token) {
            Ok(text)
        } else {
            Err(format!(
                "\"{text}\" is not a header name: expected letters, digits and '-', e.g. X-Forwarded-User"
            ))
        }
    })
}

/// `web.trusted_proxies`: an array of address blocks.
pub(super) fn cidrs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<super::Cidr>>, D::Error> {
    let expected = "expected an array of address blocks, e.g. [\"127.0.0.1/32\", \"::1/128\"]";
    read(d, |value| match value {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(text) => super::Cidr::parse(&text),
                other => Err(format!("{expected}, found {} in it", describe(&other))),
            })
            .collect(),
        other => Err(format!("{expected}, found {}", describe(&other))),
    })
}

/// A job's `app`: any name but an empty one.
pub(super) fn app<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    read(d, |v| {
        Some(string(v)?)
            .filter(|app| !app.trim().is_empty())
            .ok_or_else(|| "must not be empty".to_string())
    })
}

/// An overlap policy (§21): `wait`, `skip` or `replace`.
pub(super) fn overlap<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::job::Overlap>, D::Error> {
    read(d, |v| {
        let text = string(v)?;
        crate::job::Overlap::parse(&text)
            .ok_or_else(|| format!("\"{text}\": {}", crate::job::Overlap::EXPECTED))
    })
}

/// A list of strings (`trigger_next`).
pub(super) fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let expected = "expected an array of strings";
    read(d, |value| match value {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(format!("{expected}, found {} in it", describe(&other))),
            })
            .collect(),
        other => Err(format!("{expected}, found {}", describe(&other))),
    })
}

/// Runner tags (`runner.tags`, a job's `runs_on`): an array of tag names
/// (§19), each checked by [`crate::config::check_tag`], kept in order
/// without repeats.
pub(super) fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let expected = "expected an array of tags, e.g. [\"gpu\", \"eu\"]";
    read(d, |value| match value {
        toml::Value::Array(items) => {
            let tags = items
                .into_iter()
                .map(|item| match item {
                    // Checked here too, so that the first bad item is the one named.
                    toml::Value::String(tag) => crate::config::check_tag(&tag).map(|()| tag),
                    other => Err(format!("{expected}, found {} in it", describe(&other))),
                })
                .collect::<Result<Vec<String>, String>>()?;
            crate::config::checked_tags(tags)
        }
        other => Err(format!("{expected}, found {}", describe(&other))),
    })
}

/// A table, read into `T` (a struct of the file, or a map).
pub(super) fn table<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Table::deserialize(d).map(|Table(inner)| Some(inner))
}

/// A string in a place where serde wants a type of its own: an environment
/// variable's value.
#[derive(Debug)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        value_of(d, string).map(Text)
    }
}

/// The name of a `[jobs.NAME]` table: a valid job name (a clash with a
/// built-in job is checked later, once the built-in jobs are known).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct JobName(pub String);

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        super::check_job_name(&name).map_err(de::Error::custom)?;
        Ok(JobName(name))
    }
}

/// The name of a variable in a job's `env`: a name with `=` would be split
/// differently by the child's libc, and an empty one cannot be set at all.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EnvName(pub String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name.is_empty() {
            return Err(de::Error::custom(
                "an environment variable name must not be empty",
            ));
        }
        if name.contains('=') {
            return Err(de::Error::custom(
                "an environment variable name must not contain \"=\"",
            ));
        }
        Ok(EnvName(name))
    }
}

/// A job's `env`, variable by variable.
pub(super) type Env = BTreeMap<EnvName, Text>;

/// A table of the file, read into `T`. Anything else is refused as "expected
/// a table, found …", where serde would take an array for a struct's fields
/// in order. Its keys are read through [`Keys`].
#[derive(Debug)]
pub(super) struct Table<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TableVisitor(PhantomData)).map(Table)
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<T> TableVisitor<T> {
    fn not_a_table<E: de::Error>(found: toml::Value) -> Result<T, E> {
        Err(E::custom(format!(
            "expected a table, found {}",
            describe(&found)
        )))
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(Keys(map)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Self::not_a_table(toml::Value::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::not_a_table(toml::Value::Integer(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Self::not_a_table(toml::Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Self::not_a_table(toml::Value::String(v.to_string()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        Self::not_a_table(toml::Value::Array(Vec::new()))
    }
}

/// The one key of the table toml hands a date-time over as (toml_datetime
/// keeps the name private; the tests of every message pin it).
const DATETIME_KEY: &str = "$__toml_private_datetime";

/// A table's keys as the derived structs and maps read them: an unknown key
/// is "unknown key; expected one of: …" (the struct's own list, through
/// [`KeyError`]), and a date-time where a table belongs is "found the
/// date-time …" rather than a table with a strange key.
struct Keys<A>(A);

enum Key<T> {
    Named(T),
    Datetime,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Keys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.0.next_key_seed(KeySeed(seed))? {
            None => Ok(None),
            Some(Key::Named(key)) => Ok(Some(key)),
            Some(Key::Datetime) => {
                let text: String = self.0.next_value()?;
                Err(de::Error::custom(format!(
                    "expected a table, found the date-time {text}"
                )))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// Reads a key as a string first, then hands it to the struct's or map's
/// own key type with [`KeyError`] as the error, so that an unknown field
/// comes back with the list of known ones rather than serde's sentence.
/// The error is raised while the key is read, so its path ends in the key.
struct KeySeed<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<K> {
    type Value = Key<K::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(d)?;
        if key == DATETIME_KEY {
            return Ok(Key::Datetime);
        }
        self.0
            .deserialize(de::value::StrDeserializer::<KeyError>::new(&key))
            .map(Key::Named)
            .map_err(|KeyError(problem)| de::Error::custom(problem))
    }
}

/// The problem with a key, in the configuration's words.
#[derive(Debug)]
struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl de::Error for KeyError {
    fn custom<T: fmt::Display>(problem: T) -> Self {
        KeyError(problem.to_string())
    }

    fn unknown_field(_: &str, expected: &'static [&'static str]) -> Self {
        KeyError(format!(
            "unknown key; expected one of: {}",
            expected.join(", ")
        ))
    }
}
