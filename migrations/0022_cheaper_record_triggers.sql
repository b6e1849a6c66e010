-- Two triggers that every recorded run paid for, made cheap (issue 28): the
-- statement that records a run and claims the next was 20 % trigger time.
--
-- 1. run_counts (0021) counted a recorded run in a statement-level trigger
--    that fired on every UPDATE of manage.runs (the record, and the child
--    process mark after each spawn), built both transition tables and joined
--    them. Now a row trigger that fires only when a running run gets a
--    finished state, its condition checked before any function is called,
--    adds 1 to one row. Inserts keep the statement-level trigger: a bulk
--    insert of finished history stays one grouped upsert.
DROP TRIGGER runs_count_recorded ON manage.runs;
DROP FUNCTION manage.count_recorded_runs();

CREATE FUNCTION manage.count_recorded_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO manage.run_counts AS c (job, state, runs) VALUES (NEW.job, NEW.state, 1)
    ON CONFLICT (job, state) DO UPDATE SET runs = c.runs + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER runs_count_recorded AFTER UPDATE OF state ON manage.runs
    FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state <> 'running')
    EXECUTE FUNCTION manage.count_recorded_run();

-- 2. The next run not later than the earliest extra run (0019) looked up
--    min(at) in manage.extra_runs for every write of a job's next run, though
--    almost no job has an extra run. The earliest is now kept on the job
--    (extra_run_first, by row triggers on manage.extra_runs, which change
--    only on a run-now with arguments, a run-now --at, its cancel, and the
--    claim that takes one), and the job's trigger fires only when that
--    instant is before the next run, with nothing left to look up.
ALTER TABLE manage.jobs ADD COLUMN extra_run_first timestamptz NULL;
UPDATE manage.jobs j SET extra_run_first = x.first
FROM (SELECT job, min(at) AS first FROM manage.extra_runs GROUP BY job) x
WHERE x.job = j.name;

CREATE FUNCTION manage.keep_extra_run_first() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.job IS DISTINCT FROM NEW.job) THEN
        UPDATE manage.jobs SET extra_run_first = (SELECT min(at) FROM manage.extra_runs WHERE job = OLD.job)
        WHERE name = OLD.job;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE manage.jobs SET extra_run_first = (SELECT min(at) FROM manage.extra_runs WHERE job = NEW.job)
        WHERE name = NEW.job;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER extra_runs_keep_first AFTER INSERT OR UPDATE OF job, at OR DELETE ON manage.extra_runs
    FOR EACH ROW EXECUTE FUNCTION manage.keep_extra_run_first();

DROP TRIGGER jobs_next_run_extra_runs ON manage.jobs;
DROP FUNCTION manage.next_run_not_after_extra_runs();

CREATE FUNCTION manage.next_run_not_after_extra_runs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.next_run := NEW.extra_run_first;
    NEW.requested_run := NEW.extra_run_first;
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_next_run_extra_runs
    BEFORE UPDATE OF next_run, enabled, removed, extra_run_first ON manage.jobs
    FOR EACH ROW
    WHEN (NEW.extra_run_first IS NOT NULL AND NEW.enabled AND NOT NEW.removed
          AND (NEW.next_run IS NULL OR NEW.extra_run_first < NEW.next_run))
    EXECUTE FUNCTION manage.next_run_not_after_extra_runs();
