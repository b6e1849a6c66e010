//! Every configuration error text, exactly: the acceptance suite matches parts
//! of them, and people match the rest, so a change of reader must not change a
//! word. Each case is a file (and environment) with one mistake in it.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{BuiltinJobs, Config, Sources};

const BUILTINS: &BuiltinJobs = &[
    ("purge_job_history", &[]),
    ("send_queued_mail", &["purge_job_history"]),
];

/// The error for `toml` with `env`, the file named `manage.toml`; `Ok` as "ok".
fn load(toml: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("manage.toml");
    std::fs::write(&path, toml).expect("the file is written");
    let sources = Sources {
        config_path: Some(path.clone()),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect(),
        cwd: PathBuf::from("/nonexistent-manage-test-dir"),
    };
    match Config::load(&sources, BUILTINS) {
        Ok(_) => "ok".into(),
        Err(e) => {
            e.0.replace(&path.display().to_string(), "manage.toml")
                .replace(&dir.path().display().to_string(), "DIR")
        }
    }
}

const JOB: &str = "[jobs.x]\ncommand = \"true\"\n";

/// An environment: (variable, value) pairs.
type Env = &'static [(&'static str, &'static str)];
/// A file, its environment and its message.
type Case = (&'static str, Env, &'static str);

/// (file with `{JOB}` for a good job `x`, environment, the message or "ok").
#[rustfmt::skip]
const CASES: &[Case] = &[
    ("colour = true\n", &[], "manage.toml: colour: unknown key; expected one of: database_url, timezone, history_retention_days, max_output_bytes, runner, notifications, web, jobs"),
    ("\"a\\u0000\" = 1\n", &[], "manage.toml: \"a\\u0000\": contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("database_url = 5\n", &[], "manage.toml: database_url: expected a string, found the integer 5"),
    ("database_url = 5\n", &[("DATABASE_URL", "host=/tmp")], "manage.toml: database_url: expected a string, found the integer 5"),
    ("timezone = 5\n", &[], "manage.toml: timezone: expected a string, found the integer 5"),
    ("timezone = \"Mars/Olympus\"\n", &[], "manage.toml: timezone: \"Mars/Olympus\" is not a known time zone: expected an IANA name such as Europe/Stockholm"),
    ("timezone = 1979-05-27\n", &[], "manage.toml: timezone: expected a string, found the date-time 1979-05-27"),
    ("", &[("MANAGE_TIMEZONE", "Mars/Olympus")], "MANAGE_TIMEZONE: \"Mars/Olympus\" is not a known time zone: expected an IANA name such as Europe/Stockholm"),
    ("timezone = \"Mars/Olympus\"\n", &[("MANAGE_TIMEZONE", "UTC")], "ok"),
    ("timezone = 5\n", &[("MANAGE_TIMEZONE", "UTC")], "ok"),
    ("history_retention_days = 0\n", &[], "manage.toml: history_retention_days: 0 is out of range: expected an integer from 1 to 1000000"),
    ("history_retention_days = 1000001\n", &[], "manage.toml: history_retention_days: 1000001 is out of range: expected an integer from 1 to 1000000"),
    ("history_retention_days = \"90\"\n", &[], "manage.toml: history_retention_days: expected an integer, found the string \"90\""),
    ("history_retention_days = 1.5\n", &[], "manage.toml: history_retention_days: expected an integer, found the number 1.5"),
    ("history_retention_days = 1e400\n", &[], "manage.toml: line 1: invalid TOML: floating-point number overflowed"),
    ("max_output_bytes = 0\n", &[], "manage.toml: max_output_bytes: 0 is out of range: expected an integer from 1 to 1073741824"),
    ("max_output_bytes = 2000000000\n", &[], "manage.toml: max_output_bytes: 2000000000 is out of range: expected an integer from 1 to 1073741824"),
    ("max_output_bytes = true\n", &[], "manage.toml: max_output_bytes: expected an integer, found the boolean true"),
    ("runner = 5\n", &[], "manage.toml: runner: expected a table, found the integer 5"),
    ("runner = \"x\"\n", &[], "manage.toml: runner: expected a table, found the string \"x\""),
    ("runner = 1979-05-27\n", &[], "manage.toml: runner: expected a table, found the date-time 1979-05-27"),
    ("runner = 07:32:00\n", &[], "manage.toml: runner: expected a table, found the date-time 07:32:00"),
    ("runner = []\n", &[], "manage.toml: runner: expected a table, found an array"),
    ("runner = [4]\n", &[], "manage.toml: runner: expected a table, found an array"),
    ("runner = true\n", &[], "manage.toml: runner: expected a table, found the boolean true"),
    ("runner = 1.5\n", &[], "manage.toml: runner: expected a table, found the number 1.5"),
    ("[runner]\nparallel = 3\n", &[], "manage.toml: runner.parallel: unknown key; expected one of: max_parallel, shutdown_grace, heartbeat, cut_off, dead_after, idle_close, database_url, tags"),
    ("[runner]\n\"a\\u0000\" = 3\n", &[], "manage.toml: runner.\"a\\u0000\": contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("[runner]\nmax_parallel = 0\n", &[], "manage.toml: runner.max_parallel: 0 is out of range: expected an integer from 1 to 1024"),
    ("[runner]\nmax_parallel = 1025\n", &[], "manage.toml: runner.max_parallel: 1025 is out of range: expected an integer from 1 to 1024"),
    ("[runner]\nmax_parallel = \"4\"\n", &[], "manage.toml: runner.max_parallel: expected an integer, found the string \"4\""),
    ("[runner]\nmax_parallel = -1\n", &[], "manage.toml: runner.max_parallel: -1 is out of range: expected an integer from 1 to 1024"),
    ("[runner]\nshutdown_grace = \"00:00\"\n", &[], "manage.toml: runner.shutdown_grace: \"00:00\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("[runner]\nshutdown_grace = 30\n", &[], "manage.toml: runner.shutdown_grace: expected a string, found the integer 30"),
    ("[runner]\nheartbeat = \"fast\"\n", &[], "manage.toml: runner.heartbeat: \"fast\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("[runner]\ncut_off = \"01:00\"\ndead_after = \"00:30\"\n", &[], "manage.toml: runner.cut_off: cut_off (60 s) must not exceed dead_after (30 s) minus heartbeat (10 s), so that a runner cut off from the database kills its jobs before another runner may declare it dead"),
    ("[runner]\nidle_close = [\"00:30\"]\n", &[], "manage.toml: runner.idle_close: expected a string, found an array"),
    ("[runner.sub]\n", &[], "manage.toml: runner.sub: unknown key; expected one of: max_parallel, shutdown_grace, heartbeat, cut_off, dead_after, idle_close, database_url, tags"),
    ("notifications = 5\n", &[], "manage.toml: notifications: expected a table, found the integer 5"),
    ("[notifications]\nmail = \"x\"\n", &[], "manage.toml: notifications.mail: unknown key; expected one of: email, sender, smtp_url, smtp_ca_file, sendmail, webhooks"),
    ("[notifications]\nemail = 5\n", &[], "manage.toml: notifications.email: expected a string, found the integer 5"),
    ("[notifications]\nemail = \"not an address\"\n", &[], "manage.toml: notifications.email: \"not an address\" is not a valid mail address: Invalid input"),
    ("[notifications]\nemail = \"   \"\n", &[], "ok"),
    ("", &[("SCHEDULED_JOBS_EMAIL", "not an address")], "SCHEDULED_JOBS_EMAIL: \"not an address\" is not a valid mail address: Invalid input"),
    ("[notifications]\nemail = \"not an address\"\n", &[("SCHEDULED_JOBS_EMAIL", "ops@example.org")], "ok"),
    ("[notifications]\nsender = \"manage\\u0000@example.org\"\n", &[], "manage.toml: notifications.sender: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("[notifications]\nsender = \"bad\"\n", &[], "manage.toml: notifications.sender: \"bad\" is not a valid mail address: Invalid input"),
    ("[notifications]\nsmtp_url = \"ftp://x\"\n", &[], "manage.toml: notifications.smtp_url: \"ftp://x\" is not a valid SMTP URL: expected smtp://host[:port] or smtps://host[:port], optionally user:password@ before the host and ?tls=starttls after an smtp:// URL"),
    ("", &[("SMTP_URL", "ftp://x")], "SMTP_URL: \"ftp://x\" is not a valid SMTP URL: expected smtp://host[:port] or smtps://host[:port], optionally user:password@ before the host and ?tls=starttls after an smtp:// URL"),
    ("[notifications]\nsmtp_url = \"smtp://localhost\"\nsendmail = \"/usr/sbin/sendmail\"\n", &[], "manage.toml: notifications.sendmail: both an SMTP URL (notifications.smtp_url or SMTP_URL) and sendmail are set; give one or the other"),
    ("[notifications]\nsmtp_ca_file = \"ca.pem\"\n", &[], "manage.toml: notifications.smtp_ca_file: is only used with TLS: an smtps:// URL or an smtp:// URL with ?tls=starttls"),
    ("[notifications]\nsmtp_url = \"smtps://localhost\"\nsmtp_ca_file = \"ca.pem\"\n", &[], "manage.toml: notifications.smtp_ca_file: DIR/ca.pem is not a readable file"),
    ("[notifications]\nsendmail = false\n", &[], "manage.toml: notifications.sendmail: expected a string, found the boolean false"),
    ("[notifications.webhooks.chat]\nurl = \"https://hooks.example.org/T/B/x\"\nsecret = \"s\"\nformat = \"slack\"\n", &[], "ok"),
    ("[notifications.webhooks.chat]\nsecret = \"s\"\n", &[], "manage.toml: notifications.webhooks.chat.url: missing: every webhook needs a url"),
    ("[notifications.webhooks.chat]\nurl = \"ftp://u:pw@h/token\"\n", &[], "manage.toml: notifications.webhooks.chat.url: \"ftp://h\" is not a webhook URL: expected an http:// or https:// URL with a host"),
    ("[notifications.webhooks.chat]\nurl = \"no url\"\n", &[], "manage.toml: notifications.webhooks.chat.url: not a webhook URL: expected an http:// or https:// URL with a host"),
    ("[notifications.webhooks.chat]\nurl = \"http://h\"\nformat = \"xml\"\n", &[], "manage.toml: notifications.webhooks.chat.format: \"xml\" is not a webhook format: expected \"json\" or \"slack\""),
    ("[notifications.webhooks.chat]\nurl = \"http://h\"\nmethod = \"PUT\"\n", &[], "manage.toml: notifications.webhooks.chat.method: unknown key; expected one of: url, secret, format"),
    ("[notifications.webhooks.\"a b\"]\nurl = \"http://h\"\n", &[], "manage.toml: notifications.webhooks.\"a b\": \"a b\" is not a webhook name: expected 1 to 63 letters, digits, '_', '-' or '.'"),
    ("[notifications]\nwebhooks = 5\n", &[], "manage.toml: notifications.webhooks: expected a table, found the integer 5"),
    ("{JOB}notify = [\"webhook:chat\"]\n", &[], "manage.toml: jobs.x.notify: no webhook \"chat\": no [notifications.webhooks] are configured"),
    ("[notifications.webhooks.ops]\nurl = \"http://h\"\n[notifications.webhooks.pager]\nurl = \"http://h\"\n{JOB}notify = [\"webhook:chat\"]\n", &[], "manage.toml: jobs.x.notify: no webhook \"chat\": expected one of the [notifications.webhooks] names: ops, pager"),
    ("[notifications.webhooks.ops]\nurl = \"http://h\"\n{JOB}notify = [\"ops@example.org\", \"webhook:ops\"]\n", &[], "ok"),
    ("{JOB}notify = [\"not an address\"]\n", &[], "manage.toml: jobs.x.notify: \"not an address\" is not a valid mail address: Invalid input; expected a mail address or webhook:NAME"),
    ("{JOB}notify = \"ops@example.org\"\n", &[], "manage.toml: jobs.x.notify: expected an array of strings, found the string \"ops@example.org\""),
    ("{JOB}notify = []\n", &[], "ok"),
    ("web = 1\n", &[], "manage.toml: web: expected a table, found the integer 1"),
    ("[web]\nport = 1\n", &[], "manage.toml: web.port: unknown key; expected one of: listen, token, trusted_proxy_header, trusted_proxies"),
    ("[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1/32\", \"::1\", \"fd00::/8\"]\n", &[], "ok"),
    ("[web]\ntrusted_proxy_header = \"X Forwarded\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n", &[], "manage.toml: web.trusted_proxy_header: \"X Forwarded\" is not a header name: expected letters, digits and '-', e.g. X-Forwarded-User"),
    ("[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1/33\"]\n", &[], "manage.toml: web.trusted_proxies: \"127.0.0.1/33\" is not an address block: expected ADDR/BITS, e.g. 127.0.0.1/32 or ::1/128"),
    ("[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"localhost\"]\n", &[], "manage.toml: web.trusted_proxies: \"localhost\" is not an address block: expected ADDR/BITS, e.g. 127.0.0.1/32 or ::1/128"),
    ("[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = \"127.0.0.1/32\"\n", &[], "manage.toml: web.trusted_proxies: expected an array of address blocks, e.g. [\"127.0.0.1/32\", \"::1/128\"], found the string \"127.0.0.1/32\""),
    ("[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\n", &[], "manage.toml: web.trusted_proxy_header: needs web.trusted_proxies, the addresses of the proxies that set it"),
    ("[web]\ntrusted_proxies = [\"127.0.0.1/32\"]\n", &[], "manage.toml: web.trusted_proxies: needs web.trusted_proxy_header, the header those proxies name the user in"),
    ("[web]\nlisten = \"nope\"\n", &[], "manage.toml: web.listen: \"nope\": expected ADDR:PORT, e.g. 127.0.0.1:8000, [::1]:8000 or localhost:8000"),
    ("[web]\nlisten = \"  \"\n", &[], "manage.toml: web.listen: \"  \": expected ADDR:PORT, e.g. 127.0.0.1:8000, [::1]:8000 or localhost:8000"),
    ("[web]\nlisten = 8000\n", &[], "manage.toml: web.listen: expected a string, found the integer 8000"),
    ("[web]\nlisten = \"127.0.0.1:8000\"\ntoken = 5\n", &[], "manage.toml: web.token: expected a string, found the integer 5"),
    ("jobs = 5\n", &[], "manage.toml: jobs: expected a table, found the integer 5"),
    ("jobs = []\n", &[], "manage.toml: jobs: expected a table, found an array"),
    ("[jobs]\nx = 5\n", &[], "manage.toml: jobs.x: expected a table, found the integer 5"),
    ("[jobs]\nx = 1979-05-27\n", &[], "manage.toml: jobs.x: expected a table, found the date-time 1979-05-27"),
    ("[jobs]\nx = [1]\n", &[], "manage.toml: jobs.x: expected a table, found an array"),
    ("[jobs.Backup]\ncommand = \"true\"\n", &[], "manage.toml: jobs.Backup: \"Backup\" is not a valid job name: expected a lowercase letter followed by up to 99 lowercase letters, digits or underscores"),
    ("[jobs.jobs]\ncommand = \"true\"\n", &[], "manage.toml: jobs.jobs: \"jobs\" is the name of a manage command and cannot be a job name"),
    ("[jobs.web]\ncommand = \"true\"\n", &[], "manage.toml: jobs.web: \"web\" is the name of a manage command and cannot be a job name"),
    ("[jobs.\"a\\u0000\"]\ncommand = \"true\"\n", &[], "manage.toml: jobs.\"a\\u0000\": contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("[jobs.\"a b\"]\ncommand = \"true\"\n", &[], "manage.toml: jobs.a b: \"a b\" is not a valid job name: expected a lowercase letter followed by up to 99 lowercase letters, digits or underscores"),
    ("[jobs.purge_job_history]\ncommand = \"true\"\n", &[], "manage.toml: jobs.purge_job_history: \"purge_job_history\" is the name of a built-in job; choose another name"),
    ("[jobs.Backup]\ncommand = 5\n", &[], "manage.toml: jobs.Backup: \"Backup\" is not a valid job name: expected a lowercase letter followed by up to 99 lowercase letters, digits or underscores"),
    ("{JOB}schedule = \"daily\"\n", &[], "manage.toml: jobs.x.schedule: unknown key; expected one of: command, sql, sql_autocommit, retries, retry_delay, alert_after, description, times, interval, cron, timezone, start_deadline, timeout, should_run, trigger_next, on_success, on_failure, overlap, runs_on, jitter, notify_on_success, notify, expect_success_within, warn_after, app, working_dir, env"),
    ("{JOB}\"sch edule\" = \"daily\"\n", &[], "manage.toml: jobs.x.\"sch edule\": unknown key; expected one of: command, sql, sql_autocommit, retries, retry_delay, alert_after, description, times, interval, cron, timezone, start_deadline, timeout, should_run, trigger_next, on_success, on_failure, overlap, runs_on, jitter, notify_on_success, notify, expect_success_within, warn_after, app, working_dir, env"),
    ("[jobs.x]\ncommand = 5\n", &[], "manage.toml: jobs.x.command: expected a string, found the integer 5"),
    ("[jobs.x]\ncommand = { a = 1 }\n", &[], "manage.toml: jobs.x.command: expected a string, found a table"),
    ("[jobs.x]\ncommand = \"true\"\nsql = \"SELECT 1\"\n", &[], "manage.toml: jobs.x: both command and sql are set; give one or the other"),
    ("[jobs.x]\ndescription = \"d\"\n", &[], "manage.toml: jobs.x.command: missing: every declared job needs a command or sql"),
    ("[jobs.x]\n", &[], "manage.toml: jobs.x.command: missing: every declared job needs a command or sql"),
    ("[jobs.x]\ncommand = \"  \"\n", &[], "manage.toml: jobs.x.command: must not be empty"),
    ("[jobs.x]\nsql = \"\"\n", &[], "manage.toml: jobs.x.sql: must not be empty"),
    ("[jobs.x]\nsql = 5\n", &[], "manage.toml: jobs.x.sql: expected a string, found the integer 5"),
    ("{JOB}sql_autocommit = false\n", &[], "manage.toml: jobs.x.sql_autocommit: applies to a job with sql only; this one has a command"),
    ("{JOB}sql_autocommit = true\n", &[], "manage.toml: jobs.x.sql_autocommit: applies to a job with sql only; this one has a command"),
    ("[jobs.x]\nsql = \"SELECT 1\"\nsql_autocommit = \"yes\"\n", &[], "manage.toml: jobs.x.sql_autocommit: expected true or false, found the string \"yes\""),
    ("[jobs.x]\nsql = \"SELECT 1; COMMIT\"\n", &[], "manage.toml: jobs.x.sql: COMMIT is a transaction-control statement, and an SQL job runs in one transaction (nothing of a failed run is committed); remove it, or set sql_autocommit = true for a job that must commit in steps"),
    ("[jobs.x]\nsql = \"begin; select 1\"\n", &[], "manage.toml: jobs.x.sql: BEGIN is a transaction-control statement, and an SQL job runs in one transaction (nothing of a failed run is committed); remove it, or set sql_autocommit = true for a job that must commit in steps"),
    ("[jobs.x]\nsql = \"SELECT 1; COMMIT\"\nsql_autocommit = true\n", &[], "ok"),
    ("[jobs.x]\nsql = \"SELECT 1; COMMIT\"\nsql_autocommit = false\n", &[], "manage.toml: jobs.x.sql: COMMIT is a transaction-control statement, and an SQL job runs in one transaction (nothing of a failed run is committed); remove it, or set sql_autocommit = true for a job that must commit in steps"),
    ("{JOB}retries = 101\n", &[], "manage.toml: jobs.x.retries: 101 is out of range: expected an integer from 0 to 100"),
    ("{JOB}retries = -1\n", &[], "manage.toml: jobs.x.retries: -1 is out of range: expected an integer from 0 to 100"),
    ("{JOB}retries = \"3\"\n", &[], "manage.toml: jobs.x.retries: expected an integer, found the string \"3\""),
    ("{JOB}retries = 1.5\n", &[], "manage.toml: jobs.x.retries: expected an integer, found the number 1.5"),
    ("{JOB}retry_delay = \"soon\"\n", &[], "manage.toml: jobs.x.retry_delay: \"soon\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}retry_delay = 30\n", &[], "manage.toml: jobs.x.retry_delay: expected a string, found the integer 30"),
    ("{JOB}alert_after = 0\n", &[], "manage.toml: jobs.x.alert_after: 0 is out of range: expected an integer from 1 to 1000"),
    ("{JOB}alert_after = 1001\n", &[], "manage.toml: jobs.x.alert_after: 1001 is out of range: expected an integer from 1 to 1000"),
    ("{JOB}alert_after = \"2\"\n", &[], "manage.toml: jobs.x.alert_after: expected an integer, found the string \"2\""),
    ("{JOB}times = [\"03:00\", \"25:00\"]\n", &[], "manage.toml: jobs.x.times: \"25:00\" is not a valid time of day: expected HH:MM or HH:MM:SS between 00:00 and 23:59:59"),
    ("{JOB}times = \"03:00\"\n", &[], "manage.toml: jobs.x.times: expected an array of \"HH:MM\" strings, found the string \"03:00\""),
    ("{JOB}times = [3]\n", &[], "manage.toml: jobs.x.times: expected an array of \"HH:MM\" strings, found the integer 3 in it"),
    ("{JOB}times = [1979-05-27]\n", &[], "manage.toml: jobs.x.times: expected an array of \"HH:MM\" strings, found the date-time 1979-05-27 in it"),
    ("{JOB}times = [07:32:00]\n", &[], "manage.toml: jobs.x.times: expected an array of \"HH:MM\" strings, found the date-time 07:32:00 in it"),
    ("{JOB}times = []\n", &[], "manage.toml: jobs.x.times: expected at least one time of day"),
    ("{JOB}times = [\"03:00\", [\"04:00\"]]\n", &[], "manage.toml: jobs.x.times: expected an array of \"HH:MM\" strings, found an array in it"),
    ("{JOB}times = { a = \"03:00\" }\n", &[], "manage.toml: jobs.x.times: expected an array of \"HH:MM\" strings, found a table"),
    ("{JOB}interval = \"00:00\"\n", &[], "manage.toml: jobs.x.interval: \"00:00\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}interval = \"1:2:3:4\"\n", &[], "manage.toml: jobs.x.interval: \"1:2:3:4\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}interval = \"12:60\"\n", &[], "manage.toml: jobs.x.interval: \"12:60\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}interval = \"\"\n", &[], "manage.toml: jobs.x.interval: \"\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}interval = 300\n", &[], "manage.toml: jobs.x.interval: expected a string, found the integer 300"),
    ("{JOB}cron = \"0 25 * * *\"\n", &[], "manage.toml: jobs.x.cron: \"0 25 * * *\" is not a valid cron expression: the hour field \"25\" is not valid: expected *, numbers 0-23, ranges a-b, steps */n or a-b/n, comma lists of those"),
    ("{JOB}cron = \"0 0 30 2 *\"\n", &[], "manage.toml: jobs.x.cron: \"0 0 30 2 *\" is not a valid cron expression: it never matches: no month of the month field has a day of the day-of-month field"),
    ("{JOB}cron = \"0 25 * * * * *\"\n", &[], "manage.toml: jobs.x.cron: \"0 25 * * * * *\" is not a valid cron expression: expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second, or a macro such as @daily; found 7"),
    ("{JOB}cron = 5\n", &[], "manage.toml: jobs.x.cron: expected a string, found the integer 5"),
    ("{JOB}times = [\"03:00\"]\ninterval = \"05:00\"\n", &[], "manage.toml: jobs.x: both times and interval are set; give only one of times, interval and cron"),
    ("{JOB}times = [\"03:00\"]\ncron = \"@daily\"\n", &[], "manage.toml: jobs.x: both times and cron are set; give only one of times, interval and cron"),
    ("{JOB}interval = \"05:00\"\ncron = \"@daily\"\n", &[], "manage.toml: jobs.x: both interval and cron are set; give only one of times, interval and cron"),
    ("{JOB}times = [\"03:00\"]\ninterval = \"05:00\"\ncron = \"@daily\"\n", &[], "manage.toml: jobs.x: both times and interval and cron are set; give only one of times, interval and cron"),
    ("{JOB}times = [\"03:00\"]\ninterval = \"bad\"\n", &[], "manage.toml: jobs.x.interval: \"bad\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}timezone = \"Europe/Nowhere\"\n", &[], "manage.toml: jobs.x.timezone: \"Europe/Nowhere\" is not a known time zone: expected an IANA name such as Europe/Stockholm"),
    ("{JOB}timezone = 1\n", &[], "manage.toml: jobs.x.timezone: expected a string, found the integer 1"),
    ("{JOB}start_deadline = \"1 hour\"\n", &[], "manage.toml: jobs.x.start_deadline: \"1 hour\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}timeout = \"12:60\"\n", &[], "manage.toml: jobs.x.timeout: \"12:60\" is not a valid duration: expected MM:SS or HH:MM:SS (seconds and minutes below 60), at least 00:01 and at most 8784:00:00"),
    ("{JOB}timeout = false\n", &[], "manage.toml: jobs.x.timeout: expected a string, found the boolean false"),
    ("{JOB}app = \"\"\n", &[], "manage.toml: jobs.x.app: must not be empty"),
    ("{JOB}app = \" \"\n", &[], "manage.toml: jobs.x.app: must not be empty"),
    ("{JOB}app = 5\n", &[], "manage.toml: jobs.x.app: expected a string, found the integer 5"),
    ("{JOB}description = 5\n", &[], "manage.toml: jobs.x.description: expected a string, found the integer 5"),
    ("{JOB}description = 1979-05-27T07:32:00Z\n", &[], "manage.toml: jobs.x.description: expected a string, found the date-time 1979-05-27T07:32:00Z"),
    ("{JOB}description = \"nightly\\u0000\"\n", &[], "manage.toml: jobs.x.description: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("{JOB}working_dir = 5\n", &[], "manage.toml: jobs.x.working_dir: expected a string, found the integer 5"),
    ("{JOB}env = 5\n", &[], "manage.toml: jobs.x.env: expected a table, found the integer 5"),
    ("{JOB}env = \"A=1\"\n", &[], "manage.toml: jobs.x.env: expected a table, found the string \"A=1\""),
    ("{JOB}env = 1979-05-27\n", &[], "manage.toml: jobs.x.env: expected a table, found the date-time 1979-05-27"),
    ("{JOB}env = { A = 5 }\n", &[], "manage.toml: jobs.x.env.A: expected a string, found the integer 5"),
    ("{JOB}env = { A = { B = \"1\" } }\n", &[], "manage.toml: jobs.x.env.A: expected a string, found a table"),
    ("{JOB}env = { \"A=B\" = \"1\" }\n", &[], "manage.toml: jobs.x.env.\"A=B\": an environment variable name must not contain \"=\""),
    ("{JOB}env = { \"\" = \"1\" }\n", &[], "manage.toml: jobs.x.env.\"\": an environment variable name must not be empty"),
    ("{JOB}env = { \"A\\u0000\" = \"1\" }\n", &[], "manage.toml: jobs.x.env.\"A\\u0000\": contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("{JOB}env = { TARGET = \"/srv\\u0000\" }\n", &[], "manage.toml: jobs.x.env.TARGET: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("{JOB}[jobs.x.env]\nA = 1\n", &[], "manage.toml: jobs.x.env.A: expected a string, found the integer 1"),
    ("{JOB}trigger_next = \"y\"\n", &[], "manage.toml: jobs.x.trigger_next: expected an array of strings, found the string \"y\""),
    ("{JOB}trigger_next = [5]\n", &[], "manage.toml: jobs.x.trigger_next: expected an array of strings, found the integer 5 in it"),
    ("{JOB}trigger_next = [\"x\\u0000\"]\n", &[], "manage.toml: jobs.x.trigger_next: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("{JOB}trigger_next = [\"nosuchjob\"]\n", &[], "manage.toml: jobs.x.trigger_next: \"nosuchjob\" is not a known job"),
    ("{JOB}trigger_next = [\"x\"]\n", &[], "manage.toml: jobs.x.trigger_next: x → x is a cycle: a job may not trigger itself, directly or through others"),
    ("[jobs.a]\ncommand = \"true\"\ntrigger_next = [\"b\"]\n[jobs.b]\ncommand = \"true\"\ntrigger_next = [\"c\"]\n[jobs.c]\ncommand = \"true\"\ntrigger_next = [\"purge_job_history\", \"a\"]\n", &[], "manage.toml: jobs.a.trigger_next: a → b → c → a is a cycle: a job may not trigger itself, directly or through others"),
    ("[jobs.a]\ncommand = \"true\"\ntrigger_next = [\"send_queued_mail\"]\n[jobs.b]\ncommand = \"true\"\n", &[], "ok"),
    ("{JOB}on_success = [\"nosuchjob\"]\n", &[], "manage.toml: jobs.x.on_success: \"nosuchjob\" is not a known job"),
    ("{JOB}on_failure = \"y\"\n", &[], "manage.toml: jobs.x.on_failure: expected an array of strings, found the string \"y\""),
    ("{JOB}on_failure = [\"x\"]\n", &[], "manage.toml: jobs.x.on_failure: x → x is a cycle: a job may not trigger itself, directly or through others"),
    ("[jobs.a]\ncommand = \"true\"\non_success = [\"b\"]\n[jobs.b]\ncommand = \"true\"\non_failure = [\"c\"]\n[jobs.c]\ncommand = \"true\"\ntrigger_next = [\"a\"]\n", &[], "manage.toml: jobs.a.on_success: a → b → c → a is a cycle: a job may not trigger itself, directly or through others"),
    ("[jobs.a]\ncommand = \"true\"\non_success = [\"b\"]\non_failure = [\"b\"]\n[jobs.b]\ncommand = \"true\"\n", &[], "ok"),
    ("{JOB}overlap = \"kill\"\n", &[], "manage.toml: jobs.x.overlap: \"kill\": expected wait, skip or replace"),
    ("{JOB}overlap = 1\n", &[], "manage.toml: jobs.x.overlap: expected a string, found the integer 1"),
    ("[jobs.a]\ncommand = \"true\"\ntrigger_next = [\"b\", \"c\"]\n[jobs.b]\ncommand = \"true\"\ntrigger_next = [\"c\"]\n[jobs.c]\ncommand = \"true\"\ntrigger_next = [\"purge_job_history\"]\n", &[], "ok"),
    ("{JOB}should_run = 5\n", &[], "manage.toml: jobs.x.should_run: expected a string, found the integer 5"),
    ("{JOB}should_run = \"  \"\n", &[], "ok"),
    ("{JOB}notify_on_success = \"yes\"\n", &[], "manage.toml: jobs.x.notify_on_success: expected true or false, found the string \"yes\""),
    ("{JOB}notify_on_success = 1\n", &[], "manage.toml: jobs.x.notify_on_success: expected true or false, found the integer 1"),
    ("timezone = \n", &[], "manage.toml: line 1: invalid TOML: string values must be quoted, expected literal string"),
    ("[jobs.x]\ncommand = \"true\"\n[jobs.x]\n", &[], "manage.toml: line 3: invalid TOML: duplicate key"),
    ("a = \"\\q\"\n", &[], "manage.toml: line 1: invalid TOML: missing escaped value, expected `b`, `e`, `f`, `n`, `r`, `\\`, `\"`, `x`, `u`, `U`"),
    ("", &[("DATABASE_URL", "host=/tmp\0")], "DATABASE_URL: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("", &[("MANAGE_WEB_TOKEN", "t\0")], "MANAGE_WEB_TOKEN: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("[web]\nlisten = \"0.0.0.0:80\"\n", &[("MANAGE_WEB_TOKEN", "secret")], "ok"),
    ("[runner]\nbogus = \"a\\u0000\"\n", &[], "manage.toml: runner.bogus: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("{JOB}times = [\"\\u0000\"]\n", &[], "manage.toml: jobs.x.times: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("{JOB}retries = [\"\\u0000\"]\n", &[], "manage.toml: jobs.x.retries: contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it"),
    ("[jobs.purge_job_history]\ncommand = 5\n", &[], "manage.toml: jobs.purge_job_history: \"purge_job_history\" is the name of a built-in job; choose another name"),
    ("[jobs.x]\nsql = \"SELECT 1\"\nsql_autocommit = true\ntimes = [\"03:00\", \"01:00:30\"]\ntimezone = \"Asia/Tokyo\"\nretries = 0\nalert_after = 1000\nenv = {}\n", &[], "ok"),
];

#[test]
fn every_configuration_error_text_is_kept() {
    let mut wrong = Vec::new();
    for (toml, env, expected) in CASES {
        let actual = load(&toml.replace("{JOB}", JOB), env);
        if actual != *expected {
            wrong.push(format!(
                "{toml:?} {env:?}\n  expected: {expected}\n  actual:   {actual}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        CASES.len(),
        wrong.join("\n")
    );
}
