"""``homeward run``: the service as a process — exit statuses, signals, time limits.

Exit status (docs/operations.md):

* 0 — stopped on SIGTERM/SIGINT within the grace period;
* 1 — a part of the running service failed (the service stopped itself);
* 2 — a setting or the organisation file is refused: fix the configuration;
* 3 — a start-up step cannot succeed now (HTTP port taken or not allowed, database
  unreachable or not migrated, MQTT client id in use, broker refusing us);
* 4 — the stop did not finish within the grace period, or a second signal came: the
  process exited at once; the broker keeps every unacknowledged message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType

import click

from commands.common import settings_from
from homeward.config import Settings
from homeward.errors import HomewardError
from service.wiring import HomewardService

log = logging.getLogger("homeward.run")
EXIT_OK, EXIT_FAILED, EXIT_FORCED = 0, 1, 4


def sd_notify(socket_path: str | None, state: str) -> None:
    """Tell systemd (Type=notify) about our state; nothing without $NOTIFY_SOCKET."""
    if not socket_path:
        return
    address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", socket_path, exc)


def _write_now(line: str) -> None:
    """To stderr without logging's locks: safe from a signal handler or a timer thread."""
    os.write(2, f"{line}\n".encode(errors="replace"))


class _Stopper:
    """Turns SIGTERM/SIGINT into a bounded stop: the first sets ``stop`` and arms the
    grace period's timer (a thread, so a blocked event loop cannot hold the process);
    the second signal, or the timer, ends the process at once with status 4."""

    def __init__(self, service: HomewardService, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.loop = loop
        self.stop = asyncio.Event()
        self.grace_s = service.settings.stop_grace_s
        self._signalled = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _left(self) -> str:
        return (
            f"{self.service.pipeline.unacknowledged} messages left unacknowledged (the broker"
            f" redelivers them at the next start)"
        )

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._signalled:
            _write_now(f"error: second {name}: exiting at once; {self._left()}")
            os._exit(EXIT_FORCED)
        self._signalled = True
        timer = threading.Timer(self.grace_s, self._out_of_time)
        timer.daemon = True
        timer.start()
        sd_notify(self.service.settings.notify_socket, "STOPPING=1")
        try:
            self.loop.call_soon_threadsafe(self._begin, name)
        except RuntimeError:  # the event loop has already ended: nothing left to stop
            os._exit(EXIT_FORCED)

    def _begin(self, name: str) -> None:
        log.info("%s: stopping (at most %g s; a second signal exits at once)", name, self.grace_s)
        self.stop.set()

    def _out_of_time(self) -> None:
        _write_now(
            f"error: the stop did not finish within HOMEWARD_STOP_GRACE_S ({self.grace_s:g} s,"
            f" state {self.service.state}): exiting now; {self._left()}"
        )
        os._exit(EXIT_FORCED)


def run_service(service: HomewardService) -> int:
    """Run until a signal or a failure; the exit status (see the module's docstring)."""
    settings = service.settings

    async def main() -> None:
        stopper = _Stopper(service, asyncio.get_running_loop())
        stopper.install()
        ready = asyncio.Event()
        running = asyncio.create_task(service.run(stopper.stop, ready=ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if ready.is_set():
            sd_notify(settings.notify_socket, f"READY=1\nMAINPID={os.getpid()}")
        await running

    try:
        asyncio.run(main())
    except HomewardError as exc:  # a start-up step: one line saying what to fix
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:
        log.exception("the service failed")
        click.echo(f"error: the service failed: {exc}", err=True)
        return EXIT_FAILED
    return EXIT_OK


@click.command("run")
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the service (ingest + HTTP) against the configured database and broker.

    Exit status: 0 stopped on a signal, 1 a part failed, 2 a setting refused, 3 a
    start-up step failed, 4 the stop ran out of time (docs/operations.md)."""
    settings: Settings = settings_from(ctx)
    if settings.database_url is None or settings.mqtt_url is None:
        raise click.UsageError(
            "homeward run needs HOMEWARD_DATABASE_URL and HOMEWARD_MQTT_URL; "
            "for embedded services use `homeward demo`"
        )
    sys.stderr.flush()
    ctx.exit(run_service(HomewardService(settings, own_process=True)))
