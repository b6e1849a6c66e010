-- manage_job_runs_total (§15) kept as the runs are recorded, so that a scrape
-- of /metrics reads one row per job and state instead of counting the whole
-- history (§23: every page within 50 ms with 1,000,000 runs).
--
-- A run is counted once it has a finished state: when it is inserted with one
-- (history written by hand or by a tool) or when a running run is recorded.
-- Deleting runs (the purge) does not lower the count: "every recorded run
-- since the job was created". Statement-level triggers with transition tables,
-- so that a bulk insert costs one grouped upsert, not one per row.
CREATE TABLE manage.run_counts (
    job text NOT NULL,
    state text NOT NULL,
    runs bigint NOT NULL CHECK (runs >= 0),
    PRIMARY KEY (job, state)
);

INSERT INTO manage.run_counts (job, state, runs)
SELECT job, state, sum(n)::bigint FROM (
    SELECT job, state, count(*) AS n FROM manage.runs WHERE state <> 'running' GROUP BY job, state
    UNION ALL
    SELECT job, state, runs FROM manage.purged_runs
) counted
GROUP BY job, state;

CREATE FUNCTION manage.count_inserted_runs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO manage.run_counts AS c (job, state, runs)
    SELECT job, state, count(*) FROM inserted WHERE state <> 'running' GROUP BY job, state
    ON CONFLICT (job, state) DO UPDATE SET runs = c.runs + EXCLUDED.runs;
    RETURN NULL;
END;
$$;

CREATE FUNCTION manage.count_recorded_runs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO manage.run_counts AS c (job, state, runs)
    SELECT n.job, n.state, count(*)
    FROM updated n JOIN before_update o ON o.id = n.id
    WHERE o.state = 'running' AND n.state <> 'running'
    GROUP BY n.job, n.state
    ON CONFLICT (job, state) DO UPDATE SET runs = c.runs + EXCLUDED.runs;
    RETURN NULL;
END;
$$;

CREATE TRIGGER runs_count_inserted AFTER INSERT ON manage.runs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION manage.count_inserted_runs();

CREATE TRIGGER runs_count_recorded AFTER UPDATE ON manage.runs
    REFERENCING OLD TABLE AS before_update NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION manage.count_recorded_runs();
