-- `run-now --wait` must learn that the run it asked for was skipped, and why
-- (§17). A skip is not a run, so the history has no row for it (its claimed
-- `running` row is deleted); the job remembers its latest skip instead: the
-- reason the first phase gave, and the id the skipped claim had. The waiter
-- tells its own skip from an older one by that id, as it does for runs
-- (above the newest id at its request), so a claim made before the request
-- whose check ends after it is not taken for the request's. Unlike
-- last_skip, which a run clears, both describe the latest skip whatever
-- happened since.
ALTER TABLE manage.jobs
    ADD COLUMN last_skip_reason text NULL,
    ADD COLUMN last_skip_run bigint NULL;
