"""A private PostgreSQL cluster run from the machine's PostgreSQL binaries.

Why the machine's binaries (see docs/operations.md): they are the same server the
operators run, with contrib (btree_gist) and, when installed, TimescaleDB; an embedded
wheel would carry an older server and no TimescaleDB. ``make deps`` installs Debian's
``postgresql`` package when no binaries are found.

PostgreSQL refuses to run as root. When we are root the cluster is owned by, and run as,
an unprivileged system user (``postgres`` when it exists, else ``nobody``) through
``setpriv``; the data directory is made for that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from homeward.errors import EmbeddedServiceError

_CANDIDATE_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def find_pg_bin() -> Path:
    """Directory holding ``initdb``/``pg_ctl``/``postgres`` (newest version wins)."""
    for directory in _CANDIDATE_DIRS:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise EmbeddedServiceError(
        "no PostgreSQL server binaries found (initdb, postgres); install them with "
        "`make deps` (Debian package postgresql) or set HOMEWARD_DATABASE_URL"
    )


def _run_as_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EmbeddedServiceError("running as root and no unprivileged user to run PostgreSQL")


def _demote_prefix(user: pwd.struct_passwd | None) -> list[str]:
    if user is None:
        return []
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--reset-env",
        "--",
    ]


@dataclass
class EmbeddedPostgres:
    """One cluster in ``data_dir`` listening on 127.0.0.1:``port`` with trust auth."""

    data_dir: Path
    port: int
    database: str = "homeward"
    started_here: bool = False  # True when start() launched the server (so stop() is ours)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()  # commands run from "/", never relative

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = _run_as_user()
        cmd = [*_demote_prefix(user), str(find_pg_bin() / args[0]), *args[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
        if check and proc.returncode != 0:
            raise EmbeddedServiceError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
            )
        return proc

    def _prepare_dirs(self) -> None:
        user = _run_as_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            # The user must be able to reach the folder; give search permission upwards.
            for parent in [self.data_dir, *self.data_dir.parents]:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if parent == self.data_dir:
                    os.chown(parent, user.pw_uid, user.pw_gid)
                    parent.chmod(0o700)
                elif not mode & 0o001:
                    parent.chmod(mode | 0o001)

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_dirs()
        if self.initialised:
            return
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.data_dir}'",
            "max_connections = 100",
            "shared_buffers = 256MB",
            "synchronous_commit = on",
        ]
        if timescaledb_installed():
            settings += [
                "shared_preload_libraries = 'timescaledb'",
                "timescaledb.telemetry_level = off",
            ]
        with (self.data_dir / "postgresql.conf").open("a") as fh:
            fh.write("\n# Homeward embedded defaults\n" + "\n".join(settings) + "\n")

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self, timeout_s: float = 60.0) -> str:
        """Initialise when needed, start, create the database; return its URL."""
        self.init()
        if not self.running:
            self.started_here = True
            log = self.data_dir / "server.log"
            self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(timeout_s)),
                "-o",
                f"-p {self.port}",
            )
        self._wait_ready(timeout_s)
        self._ensure_database()
        return self.url

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedServiceError(
                        f"PostgreSQL did not accept connections: {exc}"
                    ) from exc
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def stop(self, mode: str = "fast") -> None:
        if self.initialised and self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def kill(self) -> None:
        """SIGKILL the postmaster (fault tests)."""
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().splitlines()[0])
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def timescaledb_installed() -> bool:
    """True when the TimescaleDB extension files are present for the server we would run."""
    try:
        bin_dir = find_pg_bin()
    except EmbeddedServiceError:
        return False
    pg_config = bin_dir / "pg_config"
    if not pg_config.exists():
        return False
    share = subprocess.run(
        [str(pg_config), "--sharedir"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (Path(share) / "extension" / "timescaledb.control").exists()
