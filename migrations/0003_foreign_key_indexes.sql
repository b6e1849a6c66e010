-- Deleting a run checks the rows that reference it (jobs.running_run and
-- mail_queue.run_id, both ON DELETE SET NULL). Without these indexes every
-- deleted run costs a scan of those tables, and purging a large history with
-- many jobs crawls.
CREATE INDEX jobs_running_run ON manage.jobs (running_run);
CREATE INDEX mail_queue_run_id ON manage.mail_queue (run_id);
