"""Remote mode: the services' functions, done by a dagmill server over its REST API.

With a server configured (``settings.remote()``: ``DAGMILL_SERVER`` + ``DAGMILL_TOKEN``, or
a profile of ``~/.config/dagmill/config.toml``), each function marked ``@remote_ok``
calls the method of the same name of :class:`RemoteClient`, which returns the same
types: the CLI and the Python query API do not know the difference.

Errors are the local path's too: what the server refuses (400, 404, 409, 422) is a
DefinitionError with the server's message, a token it does not take (401) or whose role
is too low (403) a DefinitionError saying so and how to get one (the CLI's exit 2); a
server that cannot be reached or fails (5xx) is a :class:`ServerUnavailable`, a
StoreUnavailable naming the server and the request id (exit 1: the input was fine).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from dagmill import settings
from dagmill.errors import DefinitionError, StoreUnavailable

if TYPE_CHECKING:
    import httpx

    from dagmill.logs import LogChunk
    from dagmill.model.projects import ProjectInfo
    from dagmill.model.runs import JobInfo, RunInfo, RunTaskInfo
    from dagmill.model.schedules import JobPolicy, ScheduleSpec, SlotInfo
    from dagmill.model.tokens import NewToken, TokenInfo
    from dagmill.services.jobs import BackfillResult, JobView
    from dagmill.services.projects import ProjectView

__all__ = ["NotOnServer", "RemoteClient", "ServerUnavailable", "client", "is_remote", "remote_ok"]

F = TypeVar("F", bound=Callable[..., Any])

API_PATH = "/api/v1"
_PAGE = 500  # the API's largest page
_FINAL = ("SUCCESS", "FAILED", "CANCELLED")
_POLL_SECONDS = 0.5


class ServerUnavailable(StoreUnavailable):
    """The server could not be reached, or failed (5xx): nothing was refused, try again."""


class NotOnServer(DefinitionError):
    """The server has no such object (404), in the token's project."""


class RemoteClient:
    """A client of one server's API (httpx, synchronous), one method per remote service
    function, with the same name, arguments and result type."""

    def __init__(self, config: settings.RemoteConfig) -> None:
        import httpx

        self.config = config
        # the API root pasted as the server (`tokens create` prints both) is the server too
        root = config.server.rstrip("/").removesuffix(API_PATH)
        self.http = httpx.Client(
            base_url=root + API_PATH,
            headers={"Authorization": f"Bearer {config.token}", "Accept": "application/json"},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )

    # -- transport -----------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise self._unreachable(method, path, e) from None
        if response.status_code >= 400:
            raise self._error(method, path, response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def _unreachable(self, method: str, path: str, e: Exception) -> ServerUnavailable:
        import httpx

        server = self.config.server
        if isinstance(e, httpx.ConnectError):
            reason = f"cannot connect ({_cause(e)})"
            hint = (
                "is `dagmill server` running there, and is the URL right "
                "(DAGMILL_SERVER, --server)?"
            )
        elif isinstance(e, httpx.TimeoutException):
            reason = "it did not answer in time"
            hint = "try again; if it goes on, look at the server's log"
        else:
            reason = _cause(e)
            hint = "try again; if it goes on, look at the server's log"
        return ServerUnavailable(
            f"the dagmill server {server} could not be reached ({method} {API_PATH}{path}): "
            f"{reason}; {hint}",
            database=server,
            reason=reason,
        )

    def _error(self, method: str, path: str, response: httpx.Response) -> Exception:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict) or "error" not in body:
            if status < 500:  # not one of the API's errors: not a dagmill server there
                return DefinitionError(
                    f"{self.config.server} answered {status} {response.reason_phrase} to "
                    f"{method} {API_PATH}{path}, not as a dagmill server does: is it one? "
                    "(DAGMILL_SERVER, --server: its root URL, e.g. http://host:8080)"
                )
            body = {}
        message = str(body.get("message") or response.reason_phrase or "error")
        rid = body.get("request_id") or response.headers.get("x-request-id") or "none"
        server = self.config.server
        if status == 401:
            token_id = self.config.token.partition(".")[0]
            return DefinitionError(
                f"the token {token_id!r} is not valid for the server {server} (unknown there, "
                "mistyped, revoked or expired): make one on the server with `dagmill tokens "
                "create --project P --role R --name N` (or ask an admin of your project), "
                "then set DAGMILL_TOKEN (or --token) to the id.secret it prints"
            )
        if status == 403:
            return DefinitionError(
                f"{message}: ask an admin of your project for a token with that role "
                "(`dagmill tokens create --role ...`)"
            )
        if status == 413:  # a bundle over the server's cap: say what to do about it
            return DefinitionError(
                f"{server} refused {method} {API_PATH}{path}: {message}, its limit. Keep "
                "large files (data, models) out of what the job uploads, or have the "
                "server started with a larger `dagmill server --max-upload MiB`"
            )
        if status >= 500:
            return ServerUnavailable(
                f"the dagmill server {server} failed on {method} {API_PATH}{path} "
                f"({status}: {message}; request id {rid}): try again; if it goes on, its "
                "log has the details under that request id",
                database=server,
                reason=f"{status} {message}",
            )
        return NotOnServer(message) if status == 404 else DefinitionError(message)

    def _items(self, path: str, params: Mapping[str, Any], limit: int | None) -> list[Any]:
        """Up to ``limit`` items (None: all) of a list endpoint, page after page."""
        out: list[Any] = []
        cursor: str | None = None
        while limit is None or len(out) < limit:
            want = _PAGE if limit is None else min(_PAGE, limit - len(out))
            query = {k: v for k, v in params.items() if v is not None}
            query["limit"] = want
            if cursor is not None:
                query["cursor"] = cursor
            page = self._json("GET", path, params=query)
            out.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor or not page["items"]:
                break
        return out

    def _own_project(self, project: str | None) -> str:
        """The token's project; ``project`` must be it (a token sees its project only)."""
        own = self.whoami().project
        if project is not None and project != own:
            raise DefinitionError(
                f"no project {project!r} on {self.config.server}: this token belongs to "
                f"project {own!r} and sees only it (use a token of {project!r})"
            )
        return own

    def whoami(self) -> TokenInfo:
        """The token this client calls with."""
        from dagmill.model.tokens import TokenInfo
        from dagmill.services.wire import from_json

        return from_json(TokenInfo, self._json("GET", "/token"))

    # -- runs ----------------------------------------------------------------------------
    def get_runs(
        self,
        status: str | None = None,
        limit: int = 20,
        job_id: str | None = None,
        project: str | None = None,
        since: float | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[RunInfo]:
        from dagmill.model.runs import RunInfo
        from dagmill.services.wire import from_json

        if before is not None:  # a server's own paging key: over the API, pages have cursors
            raise DefinitionError("get_runs(before=...) is not for remote mode: give a limit")
        if project is not None:
            self._own_project(project)
        query = {"status": status.upper() if status else None, "job_id": job_id, "since": since}
        return [from_json(RunInfo, d) for d in self._items("/runs", query, limit)]

    def _run_detail(self, run_id: str) -> dict[str, Any]:
        detail: dict[str, Any] = self._json("GET", f"/runs/{_seg(run_id)}")
        return detail

    def find_run(self, run_id: str, project: str | None = None) -> RunInfo | None:
        from dagmill.model.runs import RunInfo
        from dagmill.services.wire import from_json

        if project is not None and project != self.whoami().project:
            return None
        try:
            detail = self._run_detail(run_id)
        except NotOnServer:
            return None
        return from_json(RunInfo, detail["run"])

    def get_run(self, run_id: str) -> RunInfo:
        from dagmill.model.runs import RunInfo
        from dagmill.services.wire import from_json

        return from_json(RunInfo, self._run_detail(run_id)["run"])

    def get_run_tasks(self, run_id: str) -> list[RunTaskInfo]:
        from dagmill.model.runs import RunTaskInfo
        from dagmill.services.wire import from_json

        return [from_json(RunTaskInfo, t) for t in self._run_detail(run_id)["tasks"]]

    def pending_since(self, project: str, run_id: str) -> dict[str, float]:
        since = self._run_detail(run_id).get("pending_since") or {}
        return {str(k): float(v) for k, v in since.items()}

    def get_run_logs_list(self, run_id: str, task: str | None = None) -> list[LogChunk]:
        from dagmill.logs import LogChunk
        from dagmill.services.wire import from_json

        found = self._json("GET", f"/runs/{_seg(run_id)}/logs", params=_some(task=task))
        return [from_json(LogChunk, c) for c in found["items"]]

    def follow_run_logs(
        self, run_id: str, task: str | None = None, stop: Callable[[], bool] | None = None
    ) -> Iterator[LogChunk]:
        """The run's output as the server streams it (Server-Sent Events), until it ends."""
        import httpx

        from dagmill.logs import LogChunk
        from dagmill.services.wire import from_json

        path = f"/runs/{_seg(run_id)}/logs"
        query = _some(task=task, follow="true")
        timeout = httpx.Timeout(30.0, connect=5.0, read=None)  # quiet tasks print nothing
        try:
            with self.http.stream(
                "GET", path, params=query, timeout=timeout, headers={"Accept": "text/event-stream"}
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error("GET", path, response)
                for event, data in _events(response.iter_lines()):
                    if stop is not None and stop():
                        return
                    if event == "log":
                        yield from_json(LogChunk, json.loads(data))
                    elif event == "end":
                        return
        except httpx.TransportError as e:
            raise self._unreachable("GET", path, e) from None

    def cancel_run(self, run_id: str, wait: float = 10.0) -> str:
        run = self.get_run(run_id)
        if run.status in _FINAL:
            return f"run {run.id} already ended: {run.status}"
        body = self._json("POST", f"/runs/{_seg(run.id)}/cancel")
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return str(body["message"])
        after = self.get_run(run.id)
        if run.status == "PENDING" and after.status == "CANCELLED":
            return f"cancelled run {run.id} before it started"
        if after.status == "CANCELLED":
            return f"cancelled run {run.id}"
        return f"asked run {run.id} to stop (its engine has not confirmed yet)"

    def delete_run(self, run_id: str) -> bool:
        run = self.get_run(run_id)
        self._send("DELETE", f"/runs/{_seg(run.id)}")
        return True

    def queue_rerun(self, run_id: str, from_failed: bool = False) -> RunInfo:
        from dagmill.model.runs import RunInfo
        from dagmill.services.wire import from_json

        query = {"from_failed": "true" if from_failed else "false"}
        made = self._json("POST", f"/runs/{_seg(run_id)}/rerun", params=query)
        return from_json(RunInfo, made)

    def wait_run(self, run_id: str, changed: Callable[[list[RunTaskInfo]], None]) -> RunInfo:
        """Poll a run until it ends; ``changed`` gets its tasks each time they change."""
        seen: list[tuple[str, str, int]] = []
        while True:
            detail = self._run_detail(run_id)
            from dagmill.model.runs import RunInfo, RunTaskInfo
            from dagmill.services.wire import from_json

            tasks = [from_json(RunTaskInfo, t) for t in detail["tasks"]]
            now = [(t.task_id, t.status, t.attempts) for t in tasks]
            if now != seen:
                seen = now
                changed(tasks)
            run = from_json(RunInfo, detail["run"])
            if run.status in _FINAL:
                return run
            time.sleep(_POLL_SECONDS)

    # -- jobs ----------------------------------------------------------------------------
    def job_views(
        self, now: float | None = None, project: str | None = None, limit: int = 100
    ) -> list[JobView]:
        from dagmill.services.wire import job_view_from_json

        if project is not None:
            self._own_project(project)
        return [job_view_from_json(d) for d in self._items("/jobs", {}, limit)]

    def job_view(self, job_id: str, now: float | None = None) -> JobView:
        from dagmill.services.wire import job_view_from_json

        return job_view_from_json(self._json("GET", f"/jobs/{_seg(job_id)}"))

    def get_job(self, job_id: str) -> JobInfo:
        return self.job_view(job_id).job

    def list_jobs(self, project: str | None = None) -> list[JobInfo]:
        return [v.job for v in self.job_views(project=project)]

    def build_job(
        self,
        ref: str,
        params: Mapping[str, str],
        data_dir: str | None = None,
        name: str | None = None,
        ttl: Mapping[str, int | None] | None = None,
        schedule: ScheduleSpec | None = None,
        policy: JobPolicy | None = None,
        project: str | None = None,
        bundle: str | None = None,
    ) -> JobInfo:
        """Upload the pipeline (its file and modules, or the task's module) as a bundle,
        and have the server build the job from it (``data_dir``: a relative one is under
        the project's data folder on the server)."""
        from dagmill.services.bundles import pack

        if bundle is not None:
            raise DefinitionError("build_job(bundle=...) is the server's: give the file here")
        if project is not None:
            self._own_project(project)
        packed = pack(ref, data_dir)
        spec: dict[str, Any] = {"target": packed.ref, "params": dict(params), "data": data_dir}
        if name is not None:
            spec["name"] = name
        if ttl is not None:
            spec["ttl"] = dict(ttl)
        if schedule is not None:
            spec.update(
                cron=schedule.cron,
                every=schedule.every,
                timezone=schedule.timezone,
                start=schedule.start_date,
                end=schedule.end_date,
            )
            if policy is not None:
                spec.update(overlap=policy.overlap, catchup=policy.catchup)
        if policy is not None and policy.slot_param is not None:
            spec["slot_param"] = policy.slot_param
        made = self._json(
            "POST",
            "/jobs",
            data={"spec": json.dumps({k: v for k, v in spec.items() if v is not None})},
            files={"bundle": ("bundle.tar.gz", packed.content, "application/gzip")},
            timeout=120.0,  # a large bundle on a slow link
        )
        from dagmill.services.wire import job_view_from_json

        return job_view_from_json(made).job

    def start_job(
        self, job_id: str, params: Mapping[str, str] | None = None, workers: int = 1
    ) -> str:
        """Queue a run of the job (the server runs it with its own --workers)."""
        body = {"params": dict(params)} if params else None
        made = self._json("POST", f"/jobs/{_seg(job_id)}/run", json=body)
        return str(made["id"])

    def pause_job(self, job_id: str) -> JobInfo:
        from dagmill.services.wire import job_view_from_json

        return job_view_from_json(self._json("POST", f"/jobs/{_seg(job_id)}/pause")).job

    def resume_job(self, job_id: str, now: float | None = None) -> JobInfo:
        from dagmill.services.wire import job_view_from_json

        return job_view_from_json(self._json("POST", f"/jobs/{_seg(job_id)}/resume")).job

    def backfill_job(
        self, job_id: str, start: str, end: str, now: float | None = None
    ) -> BackfillResult:
        from dagmill.services.jobs import BackfillResult, backfill_slots

        body = {"start": start, "end": end}
        d = self._json("POST", f"/jobs/{_seg(job_id)}/backfill", json=body)
        # the server says how many slots; which they are follows from the job's schedule
        slots, _, _ = backfill_slots(d["job_id"], start, end, d["until_at"])
        return BackfillResult(
            d["job_id"],
            tuple(slots),
            tuple(d["queued"]),
            int(d["already"]),
            float(d["until_at"]),
            bool(d["clamped"]),
        )

    def skipped_slots(self, job_id: str, limit: int = 5) -> list[SlotInfo]:
        from dagmill.model.schedules import SlotInfo
        from dagmill.services.wire import from_json

        found = self._json(
            "GET", f"/jobs/{_seg(job_id)}/skipped", params={"limit": min(limit, _PAGE)}
        )
        return [from_json(SlotInfo, s) for s in found]

    def delete_job(self, job_id: str) -> list[str]:
        job = self.get_job(job_id)
        runs = [r.id for r in self.get_runs(limit=100_000, job_id=job.id)]
        self._send("DELETE", f"/jobs/{_seg(job.id)}")
        return runs

    # -- projects ------------------------------------------------------------------------
    def list_projects(self) -> list[ProjectView]:
        from dagmill.services.wire import project_from_json

        return [project_from_json(d) for d in self._items("/projects", {}, None)]

    def show_project(self, name: str) -> ProjectView:
        from dagmill.services.wire import project_from_json

        return project_from_json(self._json("GET", f"/projects/{_seg(name)}"))

    def get_project(self, name: str) -> ProjectInfo:
        return self.show_project(name).info

    def set_project(
        self,
        name: str,
        cpu: str | None = None,
        memory: str | None = None,
        gpu: str | None = None,
        unset: Sequence[str] = (),
        description: str | None = None,
    ) -> ProjectInfo:
        from dagmill.services.projects import RESOURCES
        from dagmill.services.wire import project_from_json

        for key in unset:  # said as locally, before asking the server
            if key not in RESOURCES:
                raise DefinitionError(f"--unset {key!r}: not a resource; use cpu, memory or gpu")
        body: dict[str, Any] = {k: "" for k in unset}
        body.update(_some(cpu=cpu, memory=memory, gpu=gpu, description=description))
        if not body:
            raise DefinitionError(
                f"nothing to change in project {name}: give --cpu, --memory, --gpu, "
                "--unset RESOURCE or --description"
            )
        return project_from_json(self._json("PATCH", f"/projects/{_seg(name)}", json=body)).info

    def create_project(self, name: str, *args: Any, **kwargs: Any) -> ProjectInfo:
        raise self._admin_only(f"create project {name!r}", f"dagmill projects create {name} ...")

    def delete_project(self, name: str) -> None:
        raise self._admin_only(f"delete project {name!r}", f"dagmill projects delete {name}")

    def _admin_only(self, doing: str, command: str) -> DefinitionError:
        return DefinitionError(
            f"cannot {doing} over the API: projects are created and deleted by a local "
            f"admin of the server, on its machine (`{command}` there, without "
            "DAGMILL_SERVER)"
        )

    # -- tokens --------------------------------------------------------------------------
    def create_token(
        self, project: str, role: str, name: str, expires_at: float | None = None
    ) -> NewToken:
        from dagmill.model.tokens import NewToken, TokenInfo, check_role
        from dagmill.services.wire import from_json

        self._own_project(project)
        body = {"name": name, "role": check_role(role), "expires_at": expires_at}
        made = self._json("POST", "/tokens", json=body)
        return NewToken(from_json(TokenInfo, made), made["secret"])

    def list_tokens(self, project: str | None = None, revoked: bool = False) -> list[TokenInfo]:
        from dagmill.model.tokens import TokenInfo
        from dagmill.services.wire import from_json

        if project is not None:
            self._own_project(project)
        query = {"revoked": "true" if revoked else "false"}
        return [from_json(TokenInfo, d) for d in self._items("/tokens", query, None)]

    def get_token(self, token_id: str, project: str | None = None) -> TokenInfo:
        from dagmill.model.tokens import TokenInfo
        from dagmill.services.wire import from_json

        if project is not None:
            self._own_project(project)
        try:
            found = self._json("GET", f"/tokens/{_seg(token_id)}")
        except NotOnServer:  # said as here (the server's says GET /tokens)
            raise NotOnServer(f"no token {token_id!r}: see `dagmill tokens list`") from None
        return from_json(TokenInfo, found)

    def revoke_token(self, token_id: str, project: str | None = None) -> TokenInfo:
        info = self.get_token(token_id, project)
        self._send("DELETE", f"/tokens/{_seg(info.id)}")
        # read back no more: revoking this client's own token leaves it nothing to read with
        return info if info.revoked_at is not None else replace(info, revoked_at=time.time())


def _seg(value: str) -> str:
    """``value`` as one path segment."""
    from urllib.parse import quote

    return quote(value, safe="")


def _some(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _cause(e: BaseException) -> str:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    text = str(e)
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text or type(e).__name__


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of a Server-Sent Events stream."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


_clients: dict[settings.RemoteConfig, RemoteClient] = {}


def client() -> RemoteClient | None:
    """The client of the configured server, or None (local mode)."""
    config = settings.remote()
    if config is None:
        return None
    found = _clients.get(config)
    if found is None:
        found = _clients[config] = RemoteClient(config)
    return found


def is_remote() -> bool:
    """Whether a server is configured: the services go to it, not to the database."""
    return settings.remote() is not None


def remote_ok(fn: F) -> F:
    """Run ``fn`` here, or, with a server configured, its namesake on the server."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        remote = client()
        if remote is None:
            return fn(*args, **kwargs)
        return getattr(remote, fn.__name__)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
