"""A private Mosquitto broker for the two-command start and for fault tests.

Why Mosquitto and not a pure-Python broker (see docs/operations.md): ingest relies on
MQTT 5 features that the pure-Python brokers on PyPI lack — shared subscriptions,
persistent sessions with a session expiry, and Receive Maximum flow control, which is
what keeps ingest's memory bounded while the database is down. ``make deps`` installs
Debian's ``mosquitto`` package when no binary is found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from homeward.errors import EmbeddedServiceError

_SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")
_PLUGIN = "mosquitto_dynamic_security.so"
_PLUGIN_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/usr/local/lib",
    "/opt/homebrew/lib",
)


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or next((p for p in _SEARCH if Path(p).exists()), None)
    if not found:
        raise EmbeddedServiceError(
            "no mosquitto binary found; install it with `make deps` (Debian package "
            "mosquitto) or set HOMEWARD_MQTT_URL"
        )
    return found


def find_dynamic_security() -> str:
    """Mosquitto's dynamic-security plugin (Debian ships it with the broker)."""
    found = next((f"{d}/{_PLUGIN}" for d in _PLUGIN_DIRS if Path(d, _PLUGIN).exists()), None)
    if not found:
        raise EmbeddedServiceError(
            f"no {_PLUGIN} found (searched {', '.join(_PLUGIN_DIRS)}); it comes with "
            "Mosquitto 2.0 (Debian package mosquitto)"
        )
    return found


@dataclass
class EmbeddedMosquitto:
    """Mosquitto on 127.0.0.1:``port`` with persistence under ``state_dir``.

    ``max_queued_messages`` is generous (0 = unlimited would let a flood exhaust memory):
    it bounds what the broker keeps for an offline ingest session.
    """

    state_dir: Path
    port: int
    max_queued_messages: int = 1_000_000
    autosave_interval_s: int = 1
    # `homeward device broker-files` output: clients authenticate, the policy applies
    security_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        conf = self.state_dir / "mosquitto.conf"
        secured = self.security_file is not None
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if secured else 'true'}",
            "persistence true",
            f"persistence_location {self.state_dir.resolve()}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "max_packet_size 1048576",
            f"log_dest file {self.state_dir.resolve()}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if secured:
            lines += [
                f"plugin {find_dynamic_security()}",
                f"plugin_opt_config_file {Path(str(self.security_file)).resolve()}",
            ]
        if os.geteuid() == 0:
            # Mosquitto drops privileges to this user when started as root.
            lines.insert(0, "user root")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout_s: float = 15.0) -> str:
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        conf = self._write_config()
        self._proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise EmbeddedServiceError(f"mosquitto exited at start: {err.strip()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self.url
            time.sleep(0.05)
        self.kill()
        raise EmbeddedServiceError(f"mosquitto did not listen on port {self.port}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: Mosquitto saves its persistence file before exiting."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
