-- The audit trail (§16): one row per change an operator made — configure,
-- hold, release, run-now, reset-failure, from the command line or the web
-- page — and per line a sync printed. Written in the same transaction as the
-- change it records, so a change and its row commit or vanish together.
--
-- `job` is plain text, not a foreign key: the row outlives nothing it names
-- (jobs are never deleted, only marked removed), and a key would make every
-- audit insert lock the job row. `details` is the "key: old → new" text the
-- commands show. Purged with the history (`purge_job_history`), by `at`.
CREATE TABLE manage.audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    job     text NULL,
    details text NOT NULL DEFAULT ''
);

-- `jobs audit NAME` and the job page: a job's rows, newest first.
CREATE INDEX audit_job_id ON manage.audit (job, id);
-- The purge's range delete by age.
CREATE INDEX audit_at ON manage.audit (at);
