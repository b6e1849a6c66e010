-- Job flow (§21): the overlap policy and chains on outcome.
--
-- `overlap` is declared like `retries`: the file's (or the code's) value in
-- builtin_overlap, `jobs configure --overlap` in the override (NULL: none).
-- 'wait' is today's behaviour. For 'skip' and 'replace' the worker writes,
-- once it has claimed a run, the slot that run would meet while it lasts
-- (overlap_slot: the schedule counted as if the run had ended at its
-- start); any runner that finds that slot passed while the run goes on
-- either skips it (moving overlap_slot on) or asks the run's owner to stop
-- it: replace_run names the run to stop, and the NOTIFY's payload
-- (`replace:RUN_ID`) tells its runner. The new run is claimed only once
-- the old one is recorded (the claim still needs running_run IS NULL), so
-- a job never runs beside itself. The record clears both.
--
-- on_success / on_failure are declared like runs_on: the definition's
-- lists, and the operator's (NULL: none).
ALTER TABLE manage.jobs
    ADD COLUMN builtin_overlap text NOT NULL DEFAULT 'wait'
        CHECK (builtin_overlap IN ('wait', 'skip', 'replace')),
    ADD COLUMN override_overlap text NULL
        CHECK (override_overlap IN ('wait', 'skip', 'replace')),
    ADD COLUMN overlap_slot timestamptz NULL,
    ADD COLUMN replace_run bigint NULL,
    ADD COLUMN builtin_on_success text[] NOT NULL DEFAULT '{}',
    ADD COLUMN override_on_success text[] NULL,
    ADD COLUMN builtin_on_failure text[] NOT NULL DEFAULT '{}',
    ADD COLUMN override_on_failure text[] NULL;
-- The agenda looks for the earliest overlap slot at every pass: only the
-- few running skip/replace jobs have one.
CREATE INDEX jobs_overlap_slot ON manage.jobs (overlap_slot) WHERE overlap_slot IS NOT NULL;
