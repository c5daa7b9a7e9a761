"""Schedules: triggers (pure functions of a job's schedule, its last slot and the time:
its next slots across DST, catch-up of missed ones) and the loop that decides due slots
with an injected clock, sleeping until the next one is due.
"""
