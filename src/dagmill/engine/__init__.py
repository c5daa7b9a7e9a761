"""The engine: one run = plan + state + executor + store (``engine/run.py``), admitting
tasks that declare resources against their project's quota (``engine/admission.py``)."""

from dagmill.engine.run import Reporter, RunResult, new_run_id, run_plan

__all__ = ["Reporter", "RunResult", "new_run_id", "run_plan"]
