-- The run record: runs, the graph each run ran (run_tasks) and every attempt (task_runs).
-- Portable SQL (SQLite and PostgreSQL). Times are seconds since the epoch.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    job_id TEXT,
    project TEXT NOT NULL DEFAULT 'default',
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    heartbeat_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION,
    error TEXT,
    counts TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_job ON runs (job_id, created_at);

CREATE TABLE run_tasks (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    family TEXT NOT NULL,
    params TEXT NOT NULL,
    upstream TEXT NOT NULL,
    plan_state TEXT NOT NULL,
    plan_reason TEXT,
    resources TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, task_id)
);

CREATE TABLE task_runs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    waiting_for TEXT,
    started_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION,
    error TEXT,
    error_location TEXT,
    traceback TEXT,
    PRIMARY KEY (run_id, task_id, attempt)
);
