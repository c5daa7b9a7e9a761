-- Projects share a resource quota across runs and servers (dagmill.store.ledger).
-- A project's quota is JSON ({"cpu": "4", "memory": "16Gi", "gpu": 1}); a resource it
-- does not name is not limited, except in the project 'default', where it is this
-- machine's capacity.
ALTER TABLE projects ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN updated_at DOUBLE PRECISION;
INSERT INTO projects (name, quota, created_at)
    SELECT 'default', '{}', 0 WHERE NOT EXISTS (SELECT 1 FROM projects WHERE name = 'default');
INSERT INTO projects (name, quota, created_at)
    SELECT DISTINCT project, '{}', 0 FROM jobs
    WHERE project NOT IN (SELECT name FROM projects);
INSERT INTO projects (name, quota, created_at)
    SELECT DISTINCT project, '{}', 0 FROM runs
    WHERE project NOT IN (SELECT name FROM projects);

-- A task's admitted request (a lease): held by the engine process that runs it (owner,
-- host:pid; server_id if a server runs it), heartbeat with its run, deleted as the task
-- ends. A lease whose owner died, whose server's heartbeat expired, or that missed
-- heartbeats for the lease time no longer counts, and is deleted by the next admission.
CREATE TABLE leases (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    project TEXT NOT NULL,
    cpu_milli BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    gpu INTEGER NOT NULL,
    owner TEXT NOT NULL,
    server_id TEXT,
    admitted_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX leases_by_project ON leases (project);

-- A task waiting for room in its project: why, since when, and where to wake it (a
-- datagram socket on the owner's host; on PostgreSQL, NOTIFY dagmill_ledger wakes too).
CREATE TABLE lease_waits (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    project TEXT NOT NULL,
    cpu_milli BIGINT NOT NULL,
    memory_bytes BIGINT NOT NULL,
    gpu INTEGER NOT NULL,
    owner TEXT NOT NULL,
    server_id TEXT,
    wake TEXT,
    reason TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE INDEX lease_waits_by_project ON lease_waits (project, since);

-- What each task of a job requests ({"Train-{...}": {"cpu": "2"}}, tasks with resources
-- only), recorded as the job is built: a run is checked against the project's quota as it
-- is submitted without loading the job's code.
ALTER TABLE jobs ADD COLUMN requests TEXT NOT NULL DEFAULT '{}';

-- How long an attempt waited for resources before it started (seconds).
ALTER TABLE task_runs ADD COLUMN waited DOUBLE PRECISION;

-- Which server runs a run (its runner process is the owner), and each server's heartbeat
-- period: a server silent for two periods is dead, its runs and leases are taken over.
ALTER TABLE runs ADD COLUMN server_id TEXT;
ALTER TABLE servers ADD COLUMN heartbeat_seconds DOUBLE PRECISION NOT NULL DEFAULT 5;
