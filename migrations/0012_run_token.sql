-- A run's processes are found by their mark, not only by their group (SPEC
-- §18): every process a child run starts carries MANAGE_RUN_TOKEN, a random
-- value per run, so a grandchild that left the group (setsid), or whose
-- leader died with its runner, is still found — and a stranger never is.
--
-- The token is drawn by the server as the claim inserts the run, so it is
-- recorded before the child exists: a runner killed at any moment after the
-- claim leaves a token behind for whoever recovers the run. gen_random_uuid()
-- is core from PostgreSQL 13 on, and uses the server's strong random source.
--
-- Added without a default first, then given one: a volatile default on ADD
-- COLUMN would rewrite every existing history row; these stay NULL (their
-- processes are found by the group alone, as before).
ALTER TABLE manage.runs ADD COLUMN token text NULL;
ALTER TABLE manage.runs ALTER COLUMN token SET DEFAULT gen_random_uuid()::text;
