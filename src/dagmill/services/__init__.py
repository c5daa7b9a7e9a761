"""The one facade every face calls (the CLI, the server, the REST API, the web UI): plain
functions with domain names over the run record and the engine.

    tasks       Python task classes: load, plan, preview, run, choose what to reset
    pipelines   YAML pipeline files: validate, plan, run, reset, draw; run a run target
    execution   running a plan from any front door (checks, record, logs, summary)
    jobs        build a pipeline into a job once, run it many times, by hand or on a
                schedule (pause, resume, next fires, backfill, statuses)
    runs        the run record: query, cancel, delete, resume, expire runs
    projects    projects and their resource quotas: create, list, show (use now, what
                runs and what waits), set, delete
    admin       the run record's database itself
    wake        nudge a local server after a change (a datagram to its socket)

Faces import the module they need (``from dagmill.services.runs import get_runs``); this
package imports none of them, so that each face loads only what it uses.
"""
