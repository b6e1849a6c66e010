-- §11: cron expressions, a time zone per job, start deadlines.
--
-- A cron schedule is a third pair of columns beside times and interval, for
-- the built-in (synced) and the override (operator's) schedule; the text is
-- stored as given, normalised by the program, which alone parses it.
-- The zone and the deadline likewise come in two layers: what the
-- definition declares (sync writes it) and what the operator set with `jobs
-- configure` (sync never touches it); the effective value is the operator's,
-- else the declared one, else the configured zone (`Job::zone`).
--
-- requested_run remembers the due time a run-now request set, so that the
-- start deadline can tell a request (exempt) from a scheduled slot: while
-- next_run equals it, the due run is the request's. Scheduling writes
-- next_run and leaves requested_run stale, which then simply no longer
-- matches.
ALTER TABLE manage.jobs
    ADD COLUMN builtin_cron text NULL,
    ADD COLUMN override_cron text NULL,
    ADD COLUMN builtin_timezone text NULL,
    ADD COLUMN override_timezone text NULL,
    ADD COLUMN builtin_start_deadline_seconds integer NULL,
    ADD COLUMN override_start_deadline_seconds integer NULL,
    ADD COLUMN requested_run timestamptz NULL;

CREATE OR REPLACE FUNCTION manage.trigger_job(job_name text, delay interval DEFAULT '0')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    job manage.jobs%ROWTYPE;
    due timestamptz;
BEGIN
    IF delay IS NULL OR delay < interval '0' THEN
        RAISE EXCEPTION 'manage.trigger_job: the delay must be zero or more, not %', coalesce(delay::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO job FROM manage.jobs WHERE name = job_name FOR UPDATE;
    IF NOT FOUND OR job.removed THEN
        RAISE EXCEPTION 'manage.trigger_job: there is no job "%"', job_name
            USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT job.enabled THEN
        RAISE EXCEPTION 'manage.trigger_job: job "%" is disabled', job_name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF job.running_run IS NOT NULL THEN
        -- Not lost: the runner runs it once more right after the current run.
        UPDATE manage.jobs SET run_requested = true WHERE name = job_name;
    ELSE
        due := clock_timestamp() + delay;
        UPDATE manage.jobs SET next_run = due, requested_run = due WHERE name = job_name;
    END IF;
    PERFORM pg_notify('manage_scheduled_jobs', job_name);
END
$$;
