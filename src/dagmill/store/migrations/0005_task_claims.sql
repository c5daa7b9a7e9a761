-- A task being executed is claimed by one run at a time, across processes and machines
-- sharing this database: the key is the task's id and where its output goes, so two runs
-- of one graph on one data folder collide and runs on different data folders do not.
-- owner is the process (host:pid) that heartbeats the claim; a claim whose task or run
-- ended, or whose owner died or stopped heartbeating, may be taken over. The table holds
-- the claims of live runs only (a run removes its rows as it ends): no index but the key,
-- so that claiming costs one write per task.
CREATE TABLE task_claims (
    task_key TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
