"""Start-up steps that either succeed or end start-up with one line saying what to fix.

Each raises :class:`StartupError` (exit status 3: the environment, which may change —
systemd tries again) or :class:`~homeward.errors.ConfigurationError` (exit status 2: the
settings, which will not change by themselves). See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import psycopg

from alerts.teams import Organisation, load_org_file
from homeward.db.migrate import not_applied
from homeward.errors import ConfigurationError, HomewardError

log = logging.getLogger(__name__)

# A database that answers with one of these will not change its mind by waiting.
_PERMANENT = (
    "does not exist",
    "password authentication failed",
    "no pg_hba.conf entry",
    "authentication failed",
    "permission denied",
    "is not permitted to log in",
    "invalid",
)


class StartupError(HomewardError):
    """A start-up step cannot succeed now (port taken, database unreachable or not
    migrated, another instance with the same identity...)."""

    exit_code = 3


def read_teams_file(path: Path) -> tuple[Organisation, str]:
    """Read and validate the organisation file before anything else is started."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"HOMEWARD_TEAMS_FILE {path} cannot be read: {exc}") from exc
    try:
        return load_org_file(text), text
    except HomewardError as exc:
        raise ConfigurationError(f"HOMEWARD_TEAMS_FILE {path} is not valid: {exc}") from exc


def bind_http(host: str, port: int) -> socket.socket:
    """Bind and listen now: a port that is taken or not allowed ends start-up at once.
    Connections wait in the backlog until the API serves on this socket."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"HOMEWARD_HTTP_HOST {host!r} does not resolve: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: exclusive
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(_bind_problem(host, port, exc)) from exc
    sock.setblocking(False)
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"HTTP port {where} is already in use (another homeward run?): stop that process"
            " or set HOMEWARD_HTTP_PORT"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"HTTP port {where} is not allowed for this user (ports below 1024 need"
            " privileges): set HOMEWARD_HTTP_PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"HOMEWARD_HTTP_HOST {host} is not an address of this machine"
    return f"cannot listen on HTTP {where}: {exc}"


def transient(exc: psycopg.OperationalError) -> bool:
    """Whether waiting may help (server down or starting) or not (unknown database,
    wrong password...)."""
    text = str(exc).lower()
    return not any(marker in text for marker in _PERMANENT)


async def connect_database(
    dsn: str, *, timeout_s: float, application_name: str
) -> psycopg.AsyncConnection[Any]:
    """A connection, retried while the server does not answer, for at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        try:
            return await psycopg.AsyncConnection.connect(
                dsn,
                autocommit=True,
                connect_timeout=max(2, min(10, int(left) + 1)),
                application_name=application_name[:63],
            )
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0]
            if not transient(exc):
                raise StartupError(f"the database refused the connection: {reason}") from exc
            if time.monotonic() + 1 > deadline:
                raise StartupError(
                    f"the database did not answer within HOMEWARD_STARTUP_TIMEOUT_S"
                    f" ({timeout_s:g} s): {reason}"
                ) from exc
            if attempt == 0:
                log.warning("waiting for the database (%g s at most): %s", timeout_s, reason)
            attempt += 1
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic() - 1)))


async def check_schema(conn: psycopg.AsyncConnection[Any]) -> None:
    missing = await not_applied(conn)
    if missing:
        raise StartupError(
            f"the database lacks {len(missing)} of this release's migrations"
            f" ({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}):"
            " run `homeward db upgrade`"
        )


def instance_name(client_id: str) -> str:
    """How this process names itself to PostgreSQL (``application_name``)."""
    return f"homeward run pid {os.getpid()} on {socket.gethostname()} as {client_id}"
