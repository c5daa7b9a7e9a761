-- Access tokens of the REST API (dagmill.store.tokens). A token belongs to one project
-- and has a role (viewer, operator, admin). Its secret is kept twice, never in plain
-- text: a slow hash (scrypt) that checks a Bearer secret, and the secret encrypted with
-- the server's key (AES-GCM), which a SigV4 signature needs to be checked at all.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    secret_enc TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    last_used_at DOUBLE PRECISION
);
CREATE INDEX tokens_by_project ON tokens (project, created_at);

-- Code uploaded to build a job (a pipeline file with its modules and requirements, or a
-- Python module): a tar.gz named by its sha256, kept in the database so that every
-- server of it can unpack it. A job built from one names it; its ref is inside it.
CREATE TABLE bundles (
    id TEXT PRIMARY KEY,
    content BYTEA NOT NULL,
    size BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
ALTER TABLE jobs ADD COLUMN bundle TEXT;

-- A token sees its own project's runs only: every list is filtered by project, newest
-- first by (created_at, id), a page at a time after the last (created_at, id) seen.
CREATE INDEX runs_by_project ON runs (project, created_at, id);
CREATE INDEX runs_by_project_status ON runs (project, status, created_at, id);
CREATE INDEX runs_by_project_job ON runs (project, job_id, created_at, id);
