-- The whole schema the scheduler needs, in its own schema so that it can share
-- the application's database without touching the application's tables.
CREATE SCHEMA IF NOT EXISTS manage;

-- One row per job ever defined. Removed jobs stay (removed = true) so that their
-- configuration and history come back when they are defined again.
CREATE TABLE manage.jobs (
    name                      text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,99}$'),
    app                       text NOT NULL,
    description               text NOT NULL,
    internal                  boolean NOT NULL,
    timeout_seconds           integer NOT NULL CHECK (timeout_seconds > 0),
    -- What the code or configuration file defines (kept in sync by `manage migrate`).
    builtin_times             time[] NULL,
    builtin_interval_seconds  integer NULL CHECK (builtin_interval_seconds > 0),
    definition                jsonb NOT NULL DEFAULT '{}',
    -- What the operator configures.
    enabled                   boolean NOT NULL DEFAULT true,
    notify_on_success         boolean NOT NULL DEFAULT false,
    override_times            time[] NULL,
    override_interval_seconds integer NULL CHECK (override_interval_seconds > 0),
    -- Scheduling state.
    next_run                  timestamptz NULL,
    last_run                  timestamptz NULL,
    last_state                text NULL,
    last_skip                 timestamptz NULL,
    running_run               bigint NULL,
    run_requested             boolean NOT NULL DEFAULT false,
    removed                   boolean NOT NULL DEFAULT false,
    created_at                timestamptz NOT NULL DEFAULT now(),
    CHECK (builtin_times IS NULL OR builtin_interval_seconds IS NULL),
    CHECK (override_times IS NULL OR override_interval_seconds IS NULL)
);
CREATE INDEX jobs_next_run ON manage.jobs (next_run) WHERE NOT removed AND enabled;

-- Runners: one row per runner process; a runner is alive while its session holds
-- its advisory lock (class 0x6d67, object its id: see src/store/runners.rs) or
-- its heartbeat is recent.
CREATE TABLE manage.runners (
    id           bigserial PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat    timestamptz NOT NULL DEFAULT now(),
    backend_pid  integer NULL,
    stopped_at   timestamptz NULL
);

-- The history of runs. Skips are not runs.
CREATE TABLE manage.runs (
    id              bigserial PRIMARY KEY,
    job             text NOT NULL REFERENCES manage.jobs (name) ON UPDATE CASCADE,
    state           text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'timed_out', 'interrupted')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz NULL,
    runtime_seconds double precision NULL,
    output          text NOT NULL DEFAULT '',
    runner_id       bigint NULL REFERENCES manage.runners (id) ON DELETE SET NULL,
    host            text NULL,
    pgid            integer NULL
);
CREATE INDEX runs_started ON manage.runs (started_at DESC, id DESC);
CREATE INDEX runs_job_started ON manage.runs (job, started_at DESC, id DESC);
CREATE INDEX runs_running ON manage.runs (runner_id) WHERE state = 'running';
CREATE INDEX runs_finished ON manage.runs (finished_at) WHERE state <> 'running';

ALTER TABLE manage.jobs ADD FOREIGN KEY (running_run) REFERENCES manage.runs (id) ON DELETE SET NULL;

-- The global hold: one row, always present.
CREATE TABLE manage.hold (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    held        boolean NOT NULL DEFAULT false,
    held_since  timestamptz NULL
);
INSERT INTO manage.hold (singleton, held) VALUES (true, false);

-- Notification mails waiting for delivery by send_queued_mail.
CREATE TABLE manage.mail_queue (
    id          bigserial PRIMARY KEY,
    recipient   text NOT NULL,
    sender      text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}',
    run_id      bigint NULL REFERENCES manage.runs (id) ON DELETE SET NULL,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text NULL,
    last_attempt_at timestamptz NULL
);
CREATE INDEX mail_queue_order ON manage.mail_queue (queued_at, id);
