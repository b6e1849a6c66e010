-- Dead-man alerts and slow-run warnings (§20).
--
-- expect_success_within and warn_after are declared like retries: the file's
-- (or the code's) value in builtin_*, `jobs configure` in override_* (NULL:
-- no override; NULL in both: the feature is off for the job).
--
-- expect_success_since is when the job's effective expect_success_within
-- last took a new value: a job is overdue when neither its last success nor
-- that instant is within the expectation, so setting one never alerts at
-- once about a silence that began before anyone asked.
--
-- overdue_alerted_at is when the dead-man alert went out. It is not cleared
-- by a success: the alert belongs to the silence that began at
-- greatest(last_success, expect_success_since), and an alert older than that
-- belongs to an earlier one. The runner that sends it sets it with a
-- conditional UPDATE in the transaction that queues the mail, so that of two
-- runners checking at once only one sends it.
ALTER TABLE manage.jobs
    ADD COLUMN builtin_expect_success_within_seconds integer NULL
        CHECK (builtin_expect_success_within_seconds > 0),
    ADD COLUMN override_expect_success_within_seconds integer NULL
        CHECK (override_expect_success_within_seconds > 0),
    ADD COLUMN expect_success_since timestamptz NULL,
    ADD COLUMN overdue_alerted_at timestamptz NULL,
    ADD COLUMN builtin_warn_after_seconds integer NULL
        CHECK (builtin_warn_after_seconds > 0),
    ADD COLUMN override_warn_after_seconds integer NULL
        CHECK (override_warn_after_seconds > 0);

-- Every heartbeat of every runner asks whether some job is silent too long:
-- with this index it reads only the jobs that expect a success at all.
CREATE INDEX jobs_expecting_success ON manage.jobs (name)
    WHERE coalesce(override_expect_success_within_seconds,
                   builtin_expect_success_within_seconds) IS NOT NULL;

-- The slow-run warning of a run went out (set by the runner that owns the
-- run, which alone has its output so far): at most one per run.
ALTER TABLE manage.runs ADD COLUMN slow_warned boolean NOT NULL DEFAULT false;
