-- Each run keeps the fingerprint of every task as it ran (or as it was found complete).
ALTER TABLE run_tasks ADD COLUMN fingerprint TEXT;
