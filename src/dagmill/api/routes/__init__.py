"""One router per resource: projects, jobs, runs (with their logs), tokens."""
