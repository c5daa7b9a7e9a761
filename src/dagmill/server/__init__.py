"""``dagmill server``: the long-running process. It runs the scheduler loop, claims queued
runs and runs them (bounded), heartbeats what it holds, and drains gracefully on stop; it
hosts the REST API and the web UI.
"""
