-- Pause until (§21): `jobs configure NAME --pause-until` keeps a job from
-- running until this instant; its next run is then its first slot after it,
-- as if it had just run then (no catch-up). NULL: not paused. A pause that
-- has passed is left in place and means nothing.
ALTER TABLE manage.jobs ADD COLUMN paused_until timestamptz NULL;
