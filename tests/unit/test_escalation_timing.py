"""Escalation timing with an injected clock (nothing sleeps): each level at its due time,
acknowledgement stops it and its timeout resumes it, snoozes wait, out of hours goes to
rapid response, daylight-saving days, repeat cycles, and recomputation after a restart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.alert import (
    Alert,
    State,
)
from alerts.commands import (
    Acknowledge,
    AckTimeout,
    AlertCommand,
    ConditionCleared,
    Escalate,
    RaiseOrUpdate,
    Resolve,
    Snooze,
    Unsnooze,
)
from alerts.escalation import (
    EscalationStep,
    effective_due_at,
    is_in_hours,
    next_check_at,
    next_due_step,
    plan_alert,
    plan_steps,
    resolve_targets,
)
from alerts.lifecycle import handle
from alerts.rules.types import Priority
from alerts.teams import Calendar, EscalationPolicy, Level, Policy, load_org_file
from homeward.errors import ValidationError

ORG = load_org_file((Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text())
LONDON = ZoneInfo("Europe/London")
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday; London is on UTC in November
RED = Policy(
    levels=(
        Level(after_s=0, notify=("rota:monitoring_nurse",)),
        Level(after_s=120, notify=("role:community_matron",)),
        Level(after_s=300, notify=("role:gp", "role:rapid_response")),
    ),
    repeat=1,
    ack_timeout_s=1800,
)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Pager:
    """A tiny driver that behaves like the store's tick: expire due acknowledgements,
    then fire every due step, recording each fired step number (the unique key)."""

    alert: Alert
    steps: list[EscalationStep]
    fired: set[int] = field(default_factory=set)
    log: list[tuple[float, str, int]] = field(default_factory=list)

    def do(self, command: AlertCommand, at: float) -> None:
        self.alert, _ = handle(self.alert, command, s(at))

    def tick(self, at: float) -> None:
        now = s(at)
        if self.alert.ack_expired(now):
            self.alert, _ = handle(self.alert, AckTimeout(), now)
            self.log.append((at, "renotify", self.alert.escalation_level))
        while (step := next_due_step(self.alert, self.steps, self.fired, now)) is not None:
            self.alert, _ = handle(
                self.alert, Escalate(step.step_no, step.level, step.targets), now
            )
            self.fired.add(step.step_no)
            self.log.append((at, "level", step.level))

    def run(self, seconds: Iterable[float]) -> list[tuple[float, str, int]]:
        for at in seconds:
            self.tick(at)
        return self.log


def raised(at: datetime = T0, policy: Policy = RED) -> Pager:
    hit = RaiseOrUpdate(7, "threshold:systolic_bp:severe", Priority.RED, 186.0, at, "systolic 186")
    alert, _ = handle(None, replace(hit, ack_timeout_s=policy.ack_timeout_s), at)
    return Pager(alert, plan_steps(policy, at))


def every_second(until: int) -> range:
    return range(until + 1)


def test_each_level_fires_at_its_due_time_and_the_ladder_repeats() -> None:
    assert raised().run(every_second(1000)) == [
        (0, "level", 1),
        (120, "level", 2),
        (420, "level", 3),
        (420, "level", 1),  # the second cycle: level 1's delay is 0
        (540, "level", 2),
        (840, "level", 3),
    ]


def test_repeat_cycles_are_numbered_steps() -> None:
    steps = plan_steps(RED, T0)
    assert [(x.step_no, x.cycle, x.level, (x.due_at - T0).seconds) for x in steps] == [
        (1, 1, 1, 0),
        (2, 1, 2, 120),
        (3, 1, 3, 420),
        (4, 2, 1, 420),
        (5, 2, 2, 540),
        (6, 2, 3, 840),
    ]
    assert steps[2].targets == ("role:gp", "role:rapid_response")
    again = plan_steps(RED, T0, first_step_no=7)  # e.g. re-planned after amber became red
    assert [x.step_no for x in again] == [7, 8, 9, 10, 11, 12]


def test_acknowledgement_stops_escalation() -> None:
    pager = raised(policy=RED.model_copy(update={"ack_timeout_s": None}))
    pager.run(every_second(130))
    pager.do(Acknowledge("deal.mn1", s(200)), at=200)
    assert pager.run(range(131, 20_000, 7)) == [(0, "level", 1), (120, "level", 2)]
    assert next_check_at(pager.alert, pager.steps, pager.fired, s(20_000)) is None


def test_an_expired_acknowledgement_resumes_where_escalation_paused() -> None:
    pager = raised()
    pager.run(every_second(200))
    pager.do(Acknowledge("deal.mn1", s(200)), at=200)  # level 3 was 220 s away
    assert next_check_at(pager.alert, pager.steps, pager.fired, s(300)) == s(2000)
    assert pager.run(range(201, 2600))[2:] == [
        (2000, "renotify", 2),  # the acknowledgement timed out: level 2 is told again
        (2220, "level", 3),
        (2220, "level", 1),
        (2340, "level", 2),
    ]


def test_an_acknowledgement_applied_late_is_judged_by_its_stored_expiry() -> None:
    pager = raised()
    pager.run(every_second(200))
    pager.do(Acknowledge("deal.mn1", s(200)), at=200)
    pager.tick(5000)  # the process was down from 300 s to 5000 s
    assert pager.log[2:] == [
        (5000, "renotify", 2),
        (5000, "level", 3),
        (5000, "level", 1),
        (5000, "level", 2),
        (5000, "level", 3),
    ]


def test_a_snooze_holds_escalation_until_it_ends() -> None:
    pager = raised()
    pager.run(every_second(60))
    pager.do(Snooze("deal.mn1", s(60), s(60 + 1800), "patient at the surgery"), at=60)
    assert next_check_at(pager.alert, pager.steps, pager.fired, s(61)) == s(1860)
    assert pager.run(range(61, 2000))[1:] == [(1920, "level", 2)]  # 60 s left at 60 s


def test_ending_a_snooze_early_resumes_from_then() -> None:
    pager = raised()
    pager.run(every_second(60))
    pager.do(Snooze("deal.mn1", s(60), s(60 + 1800), "patient at the surgery"), at=60)
    pager.do(Unsnooze("deal.mn1", s(100)), at=100)
    assert pager.run(range(61, 200))[1:] == [(160, "level", 2)]


def test_a_latched_alert_keeps_escalating_and_a_resolved_one_stops() -> None:
    pager = raised()
    pager.run(every_second(10))
    pager.do(ConditionCleared(128.0, s(10)), at=10)
    assert pager.run(range(11, 200))[1:] == [(120, "level", 2)]
    pager.do(Resolve("deal.mn1", s(200), "advice_given"), at=200)
    assert pager.run(range(200, 2000))[2:] == []
    assert next_check_at(pager.alert, pager.steps, pager.fired, s(2000)) is None


def test_after_a_restart_an_overdue_step_fires_once_and_not_again_once_recorded() -> None:
    pager = raised()
    pager.run(every_second(5))  # level 1 fired, then the process was killed
    alert, steps, fired = pager.alert, pager.steps, {1}
    later = s(500)  # restarted: levels 2, 3 and the repeat of level 1 are overdue
    due = next_due_step(alert, steps, fired, later)
    assert due is not None
    assert due.step_no == 2
    assert next_due_step(alert, steps, fired, later) == due  # unchanged until recorded
    for expected in (3, 4):
        fired.add(due.step_no)
        due = next_due_step(alert, steps, fired, later)
        assert due is not None
        assert due.step_no == expected
    fired.add(due.step_no)
    assert next_due_step(alert, steps, fired, later) is None  # step 5 is due at 540 s
    assert next_check_at(alert, steps, fired, later) == s(540)


def test_a_clock_that_jumps_back_neither_skips_nor_doubles() -> None:
    pager = raised()
    pager.run(every_second(130))
    assert pager.run([50, 100, 119]) == [(0, "level", 1), (120, "level", 2)]
    assert pager.run([420])[-2:] == [(420, "level", 3), (420, "level", 1)]


def test_an_alert_keeps_the_plan_it_was_raised_with() -> None:
    plan = plan_alert(ORG, "deal", "red", T0)
    changed = load_org_file(
        (Path(__file__).parents[2] / "deploy" / "teams.example.yaml")
        .read_text()
        .replace("after_s: 120", "after_s: 9999")
    )
    assert plan_alert(changed, "deal", "red", T0).steps[1].due_at == s(9999)
    assert plan.steps[1].due_at == s(120)  # the stored snapshot still says 120 s
    assert (plan.team_id, plan.in_hours, plan.policy.ack_timeout_s) == ("deal", True, 1800)


def test_out_of_hours_goes_to_the_localitys_rapid_response() -> None:
    night = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    plan = plan_alert(ORG, "margate", "red", night)
    assert (plan.team_id, plan.in_hours) == ("thanet-rapid-response", False)
    assert plan.steps[0].targets == ("rota:rapid_response",)
    people = resolve_targets(ORG, plan.team_id, plan.steps[0].targets, night).people
    assert [p.id for p in people] == ["thanet-rapid-response.rr1"]
    day = plan_alert(ORG, "margate", "red", T0)
    assert (day.team_id, day.in_hours, day.steps[1].targets) == (
        "margate",
        True,
        ("role:community_matron",),
    )


def test_a_team_may_have_its_own_out_of_hours_ladder() -> None:
    policy = EscalationPolicy(
        in_hours=RED, out_of_hours=Policy(levels=(Level(after_s=0, notify=("role:gp",)),))
    )
    assert [x.targets for x in plan_steps(policy, T0, in_hours=False)] == [("role:gp",)]
    assert len(plan_steps(policy, T0, in_hours=True)) == 6
    with pytest.raises(ValidationError, match="out-of-hours route"):
        plan_steps(EscalationPolicy(in_hours=RED), T0, in_hours=False)


CALENDAR = Calendar(bank_holidays=(datetime(2026, 12, 25).date(),))


@pytest.mark.parametrize(
    ("when", "in_hours"),
    [
        (datetime(2026, 3, 27, 8, 0, tzinfo=UTC), True),  # Friday, GMT: 08:00 local
        (datetime(2026, 3, 30, 6, 59, tzinfo=UTC), False),  # Monday, BST: 07:59 local
        (datetime(2026, 3, 30, 7, 0, tzinfo=UTC), True),  # 08:00 BST
        (datetime(2026, 3, 30, 17, 29, tzinfo=UTC), True),  # 18:29 BST
        (datetime(2026, 3, 30, 17, 30, tzinfo=UTC), False),  # 18:30 BST
        (datetime(2026, 10, 23, 7, 0, tzinfo=UTC), True),  # Friday, still BST
        (datetime(2026, 10, 26, 7, 59, tzinfo=UTC), False),  # Monday, GMT again
        (datetime(2026, 10, 26, 8, 0, tzinfo=UTC), True),
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), False),  # the change itself: a Sunday
        (datetime(2026, 12, 25, 12, 0, tzinfo=UTC), False),  # bank holiday (Friday)
        (datetime(2026, 12, 24, 12, 0, tzinfo=LONDON), True),
    ],
)
def test_working_hours_follow_the_wall_clock_through_daylight_saving(
    when: datetime, in_hours: bool
) -> None:
    assert is_in_hours(when, CALENDAR) is in_hours
    assert is_in_hours(when.astimezone(LONDON), CALENDAR) is in_hours


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValidationError, match="no time zone"):
        is_in_hours(datetime(2026, 3, 30, 9, 0), CALENDAR)
    with pytest.raises(ValidationError, match="no time zone"):
        plan_steps(RED, datetime(2026, 3, 30, 9, 0))


@pytest.mark.parametrize(
    ("raised_local", "delay_s", "due_utc"),
    [
        # spring forward: 00:30 GMT + 1 h is 01:30 UTC = 02:30 BST, not 01:30 local
        (datetime(2026, 3, 29, 0, 30, tzinfo=LONDON), 3600, datetime(2026, 3, 29, 1, 30)),
        # fall back: 00:30 BST + 2 h is 01:30 UTC = 01:30 GMT (the second 01:30)
        (datetime(2026, 10, 25, 0, 30, tzinfo=LONDON), 7200, datetime(2026, 10, 25, 1, 30)),
    ],
)
def test_delays_are_real_seconds_on_the_days_the_clocks_change(
    raised_local: datetime, delay_s: float, due_utc: datetime
) -> None:
    policy = Policy(levels=(Level(after_s=delay_s, notify=("role:gp",)),))
    [step] = plan_steps(policy, raised_local)
    assert step.due_at == due_utc.replace(tzinfo=UTC)
    assert (step.due_at - raised_local.astimezone(UTC)).total_seconds() == delay_s


def test_overlapping_holds_count_once_and_an_open_ended_one_holds_for_good() -> None:
    pager = raised()
    pager.run(every_second(10))
    pager.do(Acknowledge("deal.mn1", s(30)), at=30)  # held 30 s → 1830 s
    pager.do(Snooze("deal.mn1", s(1000), s(1000 + 3600), "GP visiting"), at=1000)
    level_2 = pager.steps[1]
    assert effective_due_at(pager.alert, level_2) == s(120 + 4570)  # held 30 s → 4600 s
    forever = raised(policy=RED.model_copy(update={"ack_timeout_s": None}))
    forever.do(Acknowledge("deal.mn1", s(30)), at=30)
    assert effective_due_at(forever.alert, level_2) is None
    assert forever.alert.state is State.ACKNOWLEDGED
