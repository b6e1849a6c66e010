-- Retries (§13). What the configuration file declares (`retries`,
-- `retry_delay`) is synced into the builtin_ columns like the built-in
-- schedule; `jobs configure --retries/--retry-delay` writes the override_
-- columns, which sync never touches. The effective value is the override when
-- set (see `Job::retries` in src/job/mod.rs).
--
-- `next_attempt` is the attempt number the job's next claimed run gets: 1
-- normally, K+1 while a retry after attempt K is pending. The claim copies it
-- into the run's `attempt` in the same statement, so a run knows its place in
-- its series even when another runner records it interrupted. SQL jobs (§12)
-- need no column: `sql` lives in the definition JSON beside `command`.
ALTER TABLE manage.jobs
    ADD COLUMN builtin_retries integer NOT NULL DEFAULT 0
        CHECK (builtin_retries BETWEEN 0 AND 100),
    ADD COLUMN builtin_retry_delay_seconds integer NOT NULL DEFAULT 30
        CHECK (builtin_retry_delay_seconds > 0),
    ADD COLUMN override_retries integer NULL
        CHECK (override_retries BETWEEN 0 AND 100),
    ADD COLUMN override_retry_delay_seconds integer NULL
        CHECK (override_retry_delay_seconds > 0),
    ADD COLUMN next_attempt integer NOT NULL DEFAULT 1 CHECK (next_attempt >= 1);

ALTER TABLE manage.runs
    ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1);
