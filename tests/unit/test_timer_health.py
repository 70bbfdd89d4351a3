"""A timer's record judged at a time: failing, hung, stopped, or keeping its promise."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerts.jobs import TimerRecord, timer_problem

BASE = TimerRecord("escalation", interval_s=1.0, scheduled_at=100.0)
STALL_S = 60.0


@pytest.mark.parametrize(
    ("record", "now", "problem"),
    [
        (BASE, 100.0, None),  # just scheduled
        (BASE, 160.9, None),  # no run yet, within interval + stall
        (BASE, 161.5, "no run for 62 s (due every 1 s)"),  # the scheduler stopped
        (replace(BASE, runs=5, last_started=200.0, last_completed=200.1), 230.0, None),
        (replace(BASE, runs=5, last_started=200.0), 262.0, "no run for 62 s (due every 1 s)"),
        (replace(BASE, runs=1, last_started=200.0, running_since=200.0), 259.0, None),
        (
            replace(BASE, runs=1, last_started=200.0, running_since=200.0),
            261.0,
            "a run has been in progress for 61 s",
        ),
        (
            replace(BASE, runs=3, failures=2, last_started=200.0, last_error="Boom: x"),
            200.5,
            "its last 2 run(s) failed: Boom: x",
        ),
        # a hung run outranks an earlier failure: it is what holds the timer now
        (
            replace(BASE, failures=1, last_error="Boom", last_started=200.0, running_since=200.0),
            300.0,
            "a run has been in progress for 100 s",
        ),
        # skipped for the database: the database is the problem, not the timer
        (replace(BASE, runs=9, skipped=9, last_started=299.0), 300.0, None),
    ],
)
def test_timer_problem(record: TimerRecord, now: float, problem: str | None) -> None:
    assert timer_problem(record, now, STALL_S) == problem
