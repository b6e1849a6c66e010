-- Alerts (§14) and the counts behind the metrics (§15).
--
-- `alert_after` is declared like `retries`: the file's value is synced into
-- builtin_alert_after, `jobs configure --alert-after` writes the override.
-- `consecutive_failures` counts the failed runs (a retry series counts once)
-- since the last success; `alert_mailed` says a failure mail was queued during
-- the current streak, so that the success ending it queues a recovery mail.
-- `last_success` and `last_runtime_seconds` are kept with the job so that the
-- metrics do not lose them when the history is purged.
ALTER TABLE manage.jobs
    ADD COLUMN builtin_alert_after integer NOT NULL DEFAULT 1
        CHECK (builtin_alert_after BETWEEN 1 AND 1000),
    ADD COLUMN override_alert_after integer NULL
        CHECK (override_alert_after BETWEEN 1 AND 1000),
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0
        CHECK (consecutive_failures >= 0),
    ADD COLUMN alert_mailed boolean NOT NULL DEFAULT false,
    ADD COLUMN last_success timestamptz NULL,
    ADD COLUMN last_runtime_seconds double precision NULL;

-- What the history already says, for jobs that ran before this migration.
UPDATE manage.jobs j SET
    last_success = s.last_success,
    last_runtime_seconds = s.last_runtime,
    consecutive_failures = s.failures
FROM (
    SELECT j2.name,
           (SELECT max(r.finished_at) FROM manage.runs r
             WHERE r.job = j2.name AND r.state = 'succeeded') AS last_success,
           (SELECT r.runtime_seconds FROM manage.runs r
             WHERE r.job = j2.name AND r.state <> 'running'
             ORDER BY r.started_at DESC, r.id DESC LIMIT 1) AS last_runtime,
           (SELECT count(*) FROM manage.runs r
             WHERE r.job = j2.name AND r.state NOT IN ('running', 'succeeded')
               AND r.finished_at > coalesce((SELECT max(s.finished_at) FROM manage.runs s
                                              WHERE s.job = j2.name AND s.state = 'succeeded'),
                                             '-infinity'))::integer AS failures
    FROM manage.jobs j2
) s
WHERE s.name = j.name;

-- manage_job_runs_total (§15) counts every recorded run since the job was
-- created: the runs still in the history plus those purged from it, which
-- the purge adds here in the statement that deletes them.
CREATE TABLE manage.purged_runs (
    job text NOT NULL,
    state text NOT NULL,
    runs bigint NOT NULL CHECK (runs >= 0),
    PRIMARY KEY (job, state)
);
