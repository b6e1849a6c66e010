-- manage.trigger_job(name, delay): run-now from SQL, inside the caller's own
-- transaction. NOTIFY is transactional, so a rolled-back caller changes nothing
-- and wakes nobody. `manage jobs run-now` calls this same function.
CREATE FUNCTION manage.trigger_job(job_name text, delay interval DEFAULT '0')
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    job manage.jobs%ROWTYPE;
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
        UPDATE manage.jobs SET next_run = clock_timestamp() + delay WHERE name = job_name;
    END IF;
    PERFORM pg_notify('manage_scheduled_jobs', job_name);
END
$$;
