-- The order tasks were planned in, so every backend lists a run's tasks the same way.
ALTER TABLE run_tasks ADD COLUMN pos INTEGER;
