-- §21: runs with arguments, extra runs at an instant, and a hold that ends
-- by itself.
--
-- A run's arguments are stored with it (`args`, empty for a run without).
-- They reach the run through `manage.extra_runs`: a run request that carries
-- arguments (`run-now -- ARG…`, `trigger_job(name, delay, args)`) and an
-- extra run at an instant (`run-now --at`) are both one row there, due at
-- `at`, and the claim that starts the job takes the earliest due row with
-- it (in the claim's own statement, under the job row's lock, so each row
-- starts exactly one run whichever runner claims). A run request without
-- arguments keeps the older, cheaper path (next_run, run_requested).
ALTER TABLE manage.runs ADD COLUMN args text[] NOT NULL DEFAULT '{}';

CREATE TABLE manage.extra_runs (
    id    bigserial PRIMARY KEY,
    job   text NOT NULL REFERENCES manage.jobs (name) ON UPDATE CASCADE ON DELETE CASCADE,
    at    timestamptz NOT NULL,
    args  text[] NOT NULL DEFAULT '{}',
    -- Only `run-now --at` rows are listed as "Extra run at" and cancelled by
    -- instant; a request with arguments is a run-now, shown as the next run.
    listed boolean NOT NULL DEFAULT false
);
CREATE INDEX extra_runs_job_at ON manage.extra_runs (job, at);

-- Whatever writes a job's next run (a record, a skip, a configure, a
-- release, a sync), the next run is never later than its earliest extra run:
-- one trigger instead of a rule in every statement that schedules. The due
-- time is marked as requested (requested_run), like a run-now: exempt from
-- the start deadline, and its record wakes a `run-now --wait`. A disabled
-- or removed job keeps its extra rows but gets no next run from them.
CREATE FUNCTION manage.next_run_not_after_extra_runs()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    first timestamptz;
BEGIN
    IF NEW.enabled AND NOT NEW.removed THEN
        SELECT min(at) INTO first FROM manage.extra_runs WHERE job = NEW.name;
        IF first IS NOT NULL AND (NEW.next_run IS NULL OR first < NEW.next_run) THEN
            NEW.next_run := first;
            NEW.requested_run := first;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_next_run_extra_runs
    BEFORE UPDATE OF next_run, enabled, removed ON manage.jobs
    FOR EACH ROW EXECUTE FUNCTION manage.next_run_not_after_extra_runs();

-- trigger_job with arguments (§21): one body for both forms, the
-- two-argument form now calling it with none. With arguments it is refused
-- for a job that cannot take any — internal (it runs in the runner's
-- process, which has no argv for it) or SQL — and otherwise queues one run
-- with them in extra_runs; without, it is the request it always was.
CREATE FUNCTION manage.trigger_job(job_name text, delay interval, args text[])
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
    due := clock_timestamp() + delay;
    IF cardinality(coalesce(args, '{}')) > 0 THEN
        IF job.internal OR job.definition ? 'sql' THEN
            RAISE EXCEPTION 'manage.trigger_job: job "%" takes no arguments (it is an % job)', job_name,
                CASE WHEN job.internal THEN 'internal' ELSE 'SQL' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO manage.extra_runs (job, at, args) VALUES (job_name, due, args);
        -- The trigger above moves next_run to `due` when that is sooner.
        UPDATE manage.jobs SET next_run = next_run WHERE name = job_name;
    ELSIF job.running_run IS NOT NULL THEN
        -- Not lost: the runner runs it once more right after the current run.
        UPDATE manage.jobs SET run_requested = true WHERE name = job_name;
    ELSE
        UPDATE manage.jobs SET next_run = due, requested_run = due WHERE name = job_name;
    END IF;
    PERFORM pg_notify('manage_scheduled_jobs', job_name);
END
$$;

CREATE OR REPLACE FUNCTION manage.trigger_job(job_name text, delay interval DEFAULT '0')
RETURNS void
LANGUAGE sql
AS $$ SELECT manage.trigger_job(job_name, delay, '{}'::text[]) $$;

-- `jobs hold --until`: the hold ends by itself at this instant. The first
-- live runner to see it pass releases it with `--pending reschedule`
-- semantics (one transaction, under this row's lock, so once); until then
-- the hold holds, so nothing that became due during it runs first.
ALTER TABLE manage.hold ADD COLUMN held_until timestamptz NULL;
