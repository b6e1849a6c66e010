-- The runners' claim takes the due jobs in (next_run, name) order, a few at
-- a time. An index in that order, over exactly the jobs that can be due, lets
-- it read only the rows it takes instead of sorting every due job each time
-- (with 1,000 jobs due at once that sort was most of the server's work). The
-- agenda's min(next_run) uses it too.
CREATE INDEX jobs_due ON manage.jobs (next_run, name)
    WHERE enabled AND NOT removed AND running_run IS NULL;
DROP INDEX manage.jobs_next_run;
