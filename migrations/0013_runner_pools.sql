-- Runner pools (§19). A runner's tags and version are written when it
-- registers, so that `jobs status` can show them and a claim can respect
-- them. A job's `runs_on` is declared like `retries`: the file's (or the
-- code's) value is synced into builtin_runs_on, `jobs configure --runs-on`
-- writes the override (NULL: none). A runner takes a job only when it has
-- every tag the job requires: runs_on <@ the runner's tags, in the claim's
-- own SQL, so that exactly-once stays PostgreSQL's.
--
-- An older runner does not know these columns and claims as before: during
-- a rolling upgrade it may take a job on a runner without the job's tags.
ALTER TABLE manage.runners
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN version text NULL;
ALTER TABLE manage.jobs
    ADD COLUMN builtin_runs_on text[] NOT NULL DEFAULT '{}',
    ADD COLUMN override_runs_on text[] NULL;
