"""Process-wide settings of the Python front door (d6tflow's ``d6tflow.settings``).

    >>> import dagmill
    >>> dagmill.settings.check_dependencies
    True

``dir``/``dirpath``    where task outputs go (set with ``dagmill.set_dir``)
``check_dependencies`` a task whose upstream must run must run too
``detect_changes``     compare fingerprints (params, code, inputs); False gives d6tflow's
                       parameter-only identity: outputs exist → complete
``execution_summary``  print the summary after ``run``
``log_level``          level of the ``dagmill`` logger
``save_with_param``    put the task id in output file names
``cached``             keep loaded outputs in memory
``record``             write runs to the run record (``$DAGMILL_HOME/dagmill.db``)
``capture_logs``       keep each task's output (stdout, stderr, logging, subprocesses) in
                       ``$DAGMILL_HOME/logs/`` (``dagmill runs logs``) instead of the terminal
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

dir: str = "data"
dirpath: Path = Path(dir)
check_dependencies: bool = True
detect_changes: bool = True
execution_summary: bool = True
log_level: str = "WARNING"
save_with_param: bool = True
cached: bool = False
record: bool = True
capture_logs: bool = True


def home() -> str:
    """dagmill's own folder (run record, logs, environments): $DAGMILL_HOME or ./.dagmill."""
    return os.environ.get("DAGMILL_HOME") or os.path.join(os.getcwd(), ".dagmill")


def logs_dir(run_id: str) -> str:
    """Where a run's captured output lives."""
    return os.path.join(home(), "logs", run_id)


def server_socket() -> str:
    """Where a local server listens for wake-ups (jobs changed, a run queued)."""
    return os.path.join(home(), "server.sock")


def project() -> str:
    """The project runs belong to unless told: $DAGMILL_PROJECT, or ``default``."""
    return os.environ.get("DAGMILL_PROJECT") or "default"


def server_id() -> str | None:
    """The server whose runner this process is ($DAGMILL_SERVER_ID, set by the server)."""
    return os.environ.get("DAGMILL_SERVER_ID") or None


# -- remote mode -----------------------------------------------------------------------------
_local_only = False


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    """The server the CLI and the query API talk to instead of the local database."""

    server: str  # its root, e.g. https://dagmill.example.com (the API is under /api/v1)
    token: str  # <token id>.<secret>
    profile: str | None = None  # the config.toml profile it came from


def force_local() -> None:
    """This process is a server (or its runner): it is the database's, never a client."""
    global _local_only
    _local_only = True


def config_file() -> str:
    """``$DAGMILL_CONFIG``, or ``~/.config/dagmill/config.toml`` (XDG_CONFIG_HOME too)."""
    if os.environ.get("DAGMILL_CONFIG"):
        return os.environ["DAGMILL_CONFIG"]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "dagmill", "config.toml")


def remote() -> RemoteConfig | None:
    """The server to talk to, or None (the local database): ``DAGMILL_SERVER`` and
    ``DAGMILL_TOKEN``, else the profile ``DAGMILL_PROFILE`` (or ``default``) of the config
    file, whose keys ``server`` and ``token`` the variables override one by one."""
    if _local_only:
        return None
    server = os.environ.get("DAGMILL_SERVER") or None
    token = os.environ.get("DAGMILL_TOKEN") or None
    profile = os.environ.get("DAGMILL_PROFILE") or None
    if (server is None or token is None) and (profile or os.path.exists(config_file())):
        from dagmill.errors import DefinitionError

        values = _profile(profile or "default", required=profile is not None)
        server = server or values.get("server")
        token = token or values.get("token")
        if server is None and token is None:
            return None
        if not server or not token:
            missing = "server" if not server else "token"
            raise DefinitionError(
                f"{config_file()}: profile {profile or 'default'!r} has no {missing} "
                f"(or set DAGMILL_{missing.upper()})"
            )
    if server is None:
        if token is not None:
            from dagmill.errors import DefinitionError

            raise DefinitionError(
                "DAGMILL_TOKEN is set but not DAGMILL_SERVER: set the server's URL too "
                "(DAGMILL_SERVER=https://host:8080), or unset DAGMILL_TOKEN"
            )
        return None
    if token is None:
        from dagmill.errors import DefinitionError

        raise DefinitionError(
            f"DAGMILL_SERVER={server} needs an access token: set DAGMILL_TOKEN (or --token) "
            "to one made by `dagmill tokens create`"
        )
    if not server.startswith(("http://", "https://")):
        from dagmill.errors import DefinitionError

        # said here (exit 2), not as a server that "could not be reached" (exit 1)
        raise DefinitionError(
            f"server {server!r} is not a URL: give it with its scheme, e.g. "
            f"http://{server.removeprefix('//')} (DAGMILL_SERVER, --server, or `server` "
            "in the config profile)"
        )
    return RemoteConfig(server.rstrip("/"), token, profile)


def _profile(name: str, required: bool) -> dict[str, str]:
    import tomllib

    from dagmill.errors import DefinitionError

    path = config_file()
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        if required:
            raise DefinitionError(
                f"DAGMILL_PROFILE={name}: there is no {path} to read it from"
            ) from None
        return {}
    except tomllib.TOMLDecodeError as e:
        raise DefinitionError(f"{path}: not valid TOML: {e}") from None
    table = doc.get(name) if name == "default" else doc.get("profiles", {}).get(name)
    if table is None and name == "default":
        table = doc.get("profiles", {}).get("default")
    if table is None:
        if required:
            known = sorted(doc.get("profiles", {})) + (["default"] if "default" in doc else [])
            raise DefinitionError(
                f"{path}: no profile {name!r} (profiles: {', '.join(known) or 'none'})"
            )
        return {}
    if not isinstance(table, dict):
        raise DefinitionError(f"{path}: {name} is not a table of server = ..., token = ...")
    return {k: str(v) for k, v in table.items() if k in ("server", "token")}
