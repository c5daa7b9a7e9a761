"""``dagmill server`` with its API: the server's loop in the main thread (it owns the
signals and decides when to stop) and uvicorn in a thread, on a socket bound first, so a
port in use is said before anything starts."""

from __future__ import annotations

import errno
import socket
import sys
import threading
from dataclasses import dataclass, field

from dagmill import settings
from dagmill.api.app import API_ROOT, ApiOptions, create_app
from dagmill.errors import DefinitionError
from dagmill.server.log import ServerLog
from dagmill.server.main import Server, ServerOptions
from dagmill.store import open_store, reuse_connections

__all__ = ["Listen", "serve"]


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the API listens (port 0: any free port; None: no API)."""

    host: str = "127.0.0.1"
    port: int | None = 8080
    api: ApiOptions = field(default_factory=ApiOptions)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it a response sent in two writes (head, body) waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise DefinitionError(
                f"port {port} on {host} is in use: stop what listens there, or pick "
                "another with --port (0: any free port)"
            ) from None
        raise DefinitionError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def serve(options: ServerOptions, listen: Listen) -> int:
    """Run a server and its API until told to stop; the server's exit code."""
    import uvicorn

    settings.force_local()  # the database's own process: never a client of a server
    # the API's event loop, its worker threads and the server's loop share one GIL: hand it
    # over every 1 ms, not 5, so a request ready to answer does not wait behind another
    sys.setswitchinterval(0.001)
    reuse_connections()  # a request borrows an open connection: no connect, no schema check
    log = ServerLog(as_json=options.log_json, level=options.log_level)
    sock = _bind(listen.host, listen.port) if listen.port is not None else None
    api: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    if sock is not None:
        config = uvicorn.Config(
            create_app(listen.api, log),
            log_level="warning",
            access_log=False,  # the app logs each request (method, path, status, ms, id)
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        api = uvicorn.Server(config)
        thread = threading.Thread(target=api.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log(
            "api_listening",
            url=f"http://{shown}:{port}{API_ROOT}",
            docs=f"http://{shown}:{port}/docs",
        )
    try:
        with open_store() as store:
            return Server(options, store, log).run()
    finally:
        if api is not None and thread is not None:
            api.should_exit = True
            thread.join(timeout=10)
        if sock is not None:
            sock.close()
