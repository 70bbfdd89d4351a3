"""`make demo` on a machine with nothing configured: `homeward demo` starts its embedded
PostgreSQL and Mosquitto, loads the demo organisation, enrols the simulated fleet, stores
its readings, prints API commands that work, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tools.embedded.mosquitto import free_port

STORED = re.compile(r"readings stored\s+(\d+)")
CURL = re.compile(r"curl -H 'Authorization: Bearer (hw_[\w-]+)' (http://\S+/api/v1/queue)")


def test_the_demo_runs_on_embedded_services_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEWARD_")}
    env.update(
        HOMEWARD_STATE_DIR=str(tmp_path / "state"),
        HOMEWARD_EMBEDDED_PG_PORT=str(free_port()),
        HOMEWARD_EMBEDDED_MQTT_PORT=str(free_port()),
        HOMEWARD_HTTP_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "commands.main",
                "demo",
                "--patients",
                "6",
                "--day-seconds",
                "10",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 120
        stored: list[int] = []
        while time.monotonic() < deadline and demo.poll() is None:
            stored = [int(n) for n in STORED.findall(log.read_text())]
            if stored and stored[-1] > 0:
                break
            time.sleep(0.5)
        text = log.read_text()
        assert demo.poll() is None, text[-3000:]
        assert stored, text[-3000:]
        assert stored[-1] > 0, text[-3000:]
        token, url = CURL.search(text).groups()  # type: ignore[union-attr]
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert json.load(answer)["team"] == "deal"
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "stopped; run `make demo` again" in text
    assert "mail.log" not in text  # the mail sink's chatter stays out of the terminal
