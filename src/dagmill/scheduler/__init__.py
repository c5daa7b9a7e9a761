"""Schedules: pure triggers (next slots across DST, catch-up) and the scheduler loop."""
