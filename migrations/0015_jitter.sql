-- Jitter (§21): each slot of a job is delayed by a pseudo-random offset
-- below this many seconds, computed from the job's name and the slot (the
-- same for every runner). Declared like `retries`: the file's (or the
-- code's) value in builtin_jitter_seconds, `jobs configure --jitter` in the
-- override (NULL: none). 0 is no jitter.
ALTER TABLE manage.jobs
    ADD COLUMN builtin_jitter_seconds integer NOT NULL DEFAULT 0
        CHECK (builtin_jitter_seconds >= 0),
    ADD COLUMN override_jitter_seconds integer NULL
        CHECK (override_jitter_seconds >= 0);
