-- The web page, part two (§23): every page within 50 ms with 1,000 jobs and
-- 1,000,000 runs (BENCHMARKS.md has the plans).
--
-- The frontpage's run strips read the newest 30 runs of every job: with the
-- state and the runtime in the index, each job's runs are an index-only scan.
-- It serves everything runs_job_started served (same keys), so it replaces it.
CREATE INDEX runs_job_strip ON manage.runs (job, started_at DESC, id DESC)
    INCLUDE (state, runtime_seconds);
DROP INDEX manage.runs_job_started;

-- /runs?state=STATE: the newest runs in one state without walking the whole
-- history past the other states.
CREATE INDEX runs_state_started ON manage.runs (state, started_at DESC, id DESC);
