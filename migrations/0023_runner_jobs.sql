-- The jobs each runner defines (issue 28). A runner claims only the jobs its
-- configuration defines; every claim, agenda, heartbeat and record sent that
-- list as a text[] parameter and tested each row with array_position. With
-- 10,000 jobs that was 1.4 ms a statement to parse the array alone, and a
-- linear search per row: a fleet of 8 runners spent both cores on it.
-- A runner now writes its list here once when it registers (and again after
-- a reconnection), and the statements look a row up by this primary key.
--
-- Rows of runners that are no longer connected are deleted when a runner
-- registers or stops; a runner that reconnects writes its rows again, so a
-- cleanup during its absence costs it nothing.
--
-- An older runner does not know this table and still sends its list: during
-- a rolling upgrade both kinds claim correctly.
CREATE TABLE manage.runner_jobs (
    runner_id bigint NOT NULL REFERENCES manage.runners (id) ON DELETE CASCADE,
    job       text NOT NULL,
    PRIMARY KEY (runner_id, job)
);
