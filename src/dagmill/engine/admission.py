"""Admission of a run's tasks that declare resources against their project's quota.

The quota is shared by every run of the project, in every process and server, so it is
kept in the store (``store/ledger.py``): admitting is one short transaction, and a task
that does not fit waits PENDING with the reason the ledger gives ("project ml: cpu 2 of 2
in use by R1 Train"). It is tried again when resources of the project are released: by
this run (at once), or by another process, which wakes this one through its wake socket
(same host) or PostgreSQL's NOTIFY (any host). A look every ``RECHECK_SECONDS`` covers
what sends no wake-up: a lease that expired because its holder died.

Tasks without resources never get here: a laptop run pays nothing for the ledger.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from dagmill import settings
from dagmill.io.wake import Waker
from dagmill.model.projects import Lease
from dagmill.model.resources import Resources
from dagmill.store.base import Store

__all__ = ["RECHECK_SECONDS", "Admission"]

RECHECK_SECONDS = 2.0


class Admission:
    """One run's gate to its project's ledger. Called with the engine's lock held (the
    store's connection is the engine's), except ``close``."""

    def __init__(
        self,
        store: Store,
        project: str,
        run_id: str,
        machine: Resources,
        server_id: str | None = None,
    ) -> None:
        self.store = store
        self.project = project
        self.run_id = run_id
        self.machine = machine
        self.server_id = server_id
        self.held: set[str] = set()  # tasks holding a lease
        self.waiting: set[str] = set()  # tasks the ledger refused, not yet admitted
        self.unreleased: set[str] = set()  # ended, but the record was away to say so
        self.fresh = True  # something was released since the ledger last refused
        self.recheck_at = 0.0
        # named in every refusal's row, so that a release on this host that commits after
        # the refusal finds it
        self.waker = Waker(os.path.join(settings.home(), "wake"))
        self._listener: Any = None
        self._retry = True
        self._refused: list[tuple[Resources, str]] = []  # this pass's refusals
        self._noted: list[tuple[str, int, Resources, str]] = []  # waits to note in bulk
        self._listening = False
        self._stop = threading.Event()

    def begin_pass(self) -> None:
        """The engine's pass over its ready tasks begins: the tasks the ledger refused
        are asked about again only if resources were released since (or the recheck is
        due)."""
        self._retry = self.woken()
        self._refused.clear()

    def ask(self, tid: str, attempt: int, request: Resources, reason: str | None) -> str | None:
        """None if ``tid`` may start (admitted), or why it waits (``reason``: why it
        waited so far). Within one pass, a task asking for at least what the ledger has
        just refused is not asked about: it waits for the same reason, noted with the
        others at the end of the pass (one transaction, not one per task of a fan-out)."""
        covered = next((why for r, why in self._refused if _covers(request, r)), None)
        if tid in self.waiting and (not self._retry or covered is not None):
            return reason or covered or "waiting for room in the project"
        if covered is not None:
            self._noted.append((tid, attempt, request, covered))
            self.waiting.add(tid)
            return covered
        why = self.admit(tid, attempt, request)
        if why is not None:
            self._refused.append((request, why))
        return why

    def end_pass(self, every_task_looked_at: bool) -> None:
        if self._noted:
            # only what `projects show` lists: a failure changes nothing of the wait
            with contextlib.suppress(Exception):
                self.store.note_waits(
                    self.project,
                    self.run_id,
                    self._noted,
                    server_id=self.server_id,
                    wake=self.waker.address,
                )
            self._noted.clear()
            self.recheck_at = time.monotonic() + RECHECK_SECONDS
        if every_task_looked_at:
            self.fresh = False  # a wake-up is spent once every ready task had its look

    def admit(self, tid: str, attempt: int, request: Resources) -> str | None:
        """None if ``tid`` was admitted (it holds a lease now), or why it waits."""
        got = self._admit(tid, attempt, request)
        if isinstance(got, str) and not self._listening and self._listen():
            # listening from now on: a release between the refusal and the LISTEN would
            # be missed, so ask once more
            got = self._admit(tid, attempt, request)
        if isinstance(got, str):
            self.waiting.add(tid)
            self.recheck_at = time.monotonic() + RECHECK_SECONDS
            return got
        self.waiting.discard(tid)
        self.held.add(tid)
        return None

    def _admit(self, tid: str, attempt: int, request: Resources) -> Lease | str:
        try:
            return self.store.admit(
                self.project,
                self.run_id,
                tid,
                attempt,
                request,
                machine=self.machine,
                server_id=self.server_id,
                wake=self.waker.address,
            )
        except Exception as e:
            # the record is away (or locked past its patience): the task waits and is
            # tried again at the recheck; a lasting outage stops the run via its flushes
            return f"waiting for the run record to admit it: {type(e).__name__}: {e}"

    def release(self, tid: str) -> None:
        """``tid`` ended: its lease goes, which wakes the project's waiters (this run's
        too: they are tried again in the engine's next pass)."""
        if tid in self.held:
            self.held.discard(tid)
            self.fresh = True
            try:
                self.store.release_lease(self.run_id, tid)
            except Exception:
                self.unreleased.add(tid)  # let go at the next pass, or as the run ends

    def woken(self) -> bool:
        """Whether the tasks the ledger refused are worth trying again now: a release
        happened (here, or signalled by another process), or the recheck is due."""
        if self.waker.drain():
            self.fresh = True
        for tid in list(self.unreleased):
            with contextlib.suppress(Exception):
                self.store.release_lease(self.run_id, tid)
                self.unreleased.discard(tid)
        if not self.fresh and self.waiting and time.monotonic() >= self.recheck_at:
            self.fresh = True
        return self.fresh

    @property
    def busy(self) -> bool:
        """Whether it holds or waits for anything (its rows heartbeat with the run)."""
        return bool(self.held or self.waiting or self.unreleased)

    def _listen(self) -> bool:
        """On PostgreSQL, LISTEN for releases from any host (a connection of its own,
        opened at the first refusal only); False where the store cannot notify."""
        self._listening = True  # asked once per run
        try:
            listener = self.store.ledger_listener()
        except Exception:
            return False  # the recheck covers it
        if listener is None:
            return False
        self._listener = listener
        threading.Thread(target=self._forward, name="dagmill-ledger", daemon=True).start()
        return True

    def _forward(self) -> None:
        listener, waker = self._listener, self.waker
        while not self._stop.is_set():
            try:
                if listener.wait(1.0):
                    waker.poke()
            except Exception:
                # the connection dropped: the recheck covers it until the run ends
                return

    def close(self) -> None:
        """The run ended: free what it holds or waits for (after a kill -9 the leases
        expire instead), and stop listening."""
        self._stop.set()
        if self.held or self.waiting or self.unreleased:
            with contextlib.suppress(Exception):
                self.store.release_run_leases(self.run_id)
            self.held.clear()
            self.waiting.clear()
            self.unreleased.clear()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
        self.waker.close()


def _covers(request: Resources, refused: Resources) -> bool:
    """Whether ``request`` asks for at least what ``refused`` did, of every resource."""
    return (
        request.cpu_milli >= refused.cpu_milli
        and request.memory_bytes >= refused.memory_bytes
        and request.gpu >= refused.gpu
    )
