-- Two foreign keys sat on the hottest path, each checked at every claim:
-- runs.runner_id -> runners took a KEY SHARE lock on the one runners row that
-- every claim of a runner shares (multixacts under load), and
-- jobs.running_run -> runs looked up the run just inserted. Neither protects
-- anything the code relies on: recovery treats a run whose runner row is
-- missing as orphaned, and a running run is never deleted while a job points
-- at it (a skip clears the job first). runs.job -> jobs stays.
ALTER TABLE manage.runs DROP CONSTRAINT runs_runner_id_fkey;
ALTER TABLE manage.jobs DROP CONSTRAINT jobs_running_run_fkey;
