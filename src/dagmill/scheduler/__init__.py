"""Schedules: triggers (pure functions of a job's schedule, its last slot and the time:
its next slots, across DST, with catch-up of missed ones) and the loop that sleeps until
the next slot is due, with an injected clock, and starts the job's runs.
"""
