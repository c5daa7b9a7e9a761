"""The planner (what must run, and why) and the pure run state machine."""
