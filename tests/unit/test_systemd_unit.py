"""The systemd unit agrees with the service's own limits and exit statuses."""

from __future__ import annotations

import configparser
from pathlib import Path

from homeward.config import Settings
from homeward.errors import ConfigurationError
from service.startup import StartupError

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "homeward.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_waits_longer_than_the_grace_period_and_the_start_up_limit() -> None:
    service = unit()["Service"]
    defaults = Settings(_env_file=None)
    assert service["Type"] == "notify"  # READY=1 from commands/run_cmd.py
    assert float(service["TimeoutStopSec"]) >= defaults.stop_grace_s + 5
    assert float(service["TimeoutStopSec"]) < 90  # systemd's own default
    assert float(service["TimeoutStartSec"]) > defaults.startup_timeout_s + 30


def test_systemd_restarts_what_may_pass_and_not_a_refused_setting() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"].split() == [str(ConfigurationError.exit_code)]
    assert StartupError.exit_code not in {
        int(s) for s in service["RestartPreventExitStatus"].split()
    }
    assert unit()["Unit"]["StartLimitIntervalSec"] == "0"
