-- Projects (tenants), pipelines (pinned definitions), jobs (built pipelines), what a run
-- ran (so it can be run again), and where each attempt's log lines are.
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    quota TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE pipelines (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL DEFAULT 'default',
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX pipelines_by_version ON pipelines (project, name, version);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL DEFAULT 'default',
    name TEXT NOT NULL,
    pipeline_id TEXT NOT NULL REFERENCES pipelines (id),
    params TEXT NOT NULL DEFAULT '{}',
    data_dir TEXT,
    schedule TEXT,
    ttl TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX jobs_by_name ON jobs (project, name);

ALTER TABLE runs ADD COLUMN target TEXT;
ALTER TABLE task_runs ADD COLUMN log_path TEXT;
ALTER TABLE task_runs ADD COLUMN log_start INTEGER;
ALTER TABLE task_runs ADD COLUMN log_end INTEGER;
