-- Schedules and the server: a scheduled run knows its slot, and at most one run exists
-- per (job, slot) — two schedulers sharing this database never start one slot twice.
-- NULLs are distinct in a unique index (SQLite and PostgreSQL alike), so runs started by
-- hand (scheduled_for NULL) are not constrained.
ALTER TABLE runs ADD COLUMN scheduled_for DOUBLE PRECISION;
CREATE UNIQUE INDEX runs_by_slot ON runs (job_id, scheduled_for);

-- A job's policies (see dagmill.model.schedules.JobPolicy), whether its schedule is
-- paused, and the latest slot decided for it (fired, skipped or dropped): the scheduler
-- counts the next slots from there.
ALTER TABLE jobs ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip';
ALTER TABLE jobs ADD COLUMN catchup TEXT NOT NULL DEFAULT 'latest';
ALTER TABLE jobs ADD COLUMN slot_param TEXT;
ALTER TABLE jobs ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN last_slot_at DOUBLE PRECISION;

-- The decision about one slot of one job, written once (the key): 'run' (run_id is the
-- run made for it) or 'skipped' (reason says why, e.g. the previous run still runs).
CREATE TABLE job_slots (
    job_id TEXT NOT NULL,
    scheduled_for DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT,
    reason TEXT,
    decided_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, scheduled_for)
);

-- The servers sharing this database (`dagmill server`): running, draining or stopped,
-- and alive while they heartbeat.
CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    max_runs INTEGER NOT NULL,
    status TEXT NOT NULL,
    stopped_at DOUBLE PRECISION
);

-- Change counters: a scheduler reads one row to learn whether jobs changed since it last
-- looked (every job mutation bumps 'jobs' in its own transaction).
CREATE TABLE changes (
    topic TEXT PRIMARY KEY,
    counter INTEGER NOT NULL
);
INSERT INTO changes (topic, counter) VALUES ('jobs', 0);
