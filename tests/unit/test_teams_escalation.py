"""The organisation file and escalation timing, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.escalation import is_in_hours, plan_steps, policy_for, resolve_targets
from alerts.teams import Level, Policy, load_org_file
from homeward.errors import ValidationError

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
ORG = load_org_file(EXAMPLE)
LONDON = ZoneInfo("Europe/London")


def london(y: int, m: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=LONDON)


def test_the_example_organisation_is_the_fictional_design() -> None:
    assert {
        "deal",
        "dover",
        "folkestone",
        "romney-marsh",
        "broadstairs",
        "margate",
        "ramsgate",
    } <= set(ORG.teams)
    assert [loc.name for loc in ORG.localities] == ["South Kent Coast", "Thanet"]
    deal = ORG.teams["deal"]
    roles = {r for s in deal.staff for r in s.roles}
    assert roles == {
        "monitoring_nurse",
        "community_matron",
        "district_nurse",
        "gp",
        "social_worker",
        "care_coordinator",
    }
    assert all("(fictional)" in s.name for t in ORG.teams.values() for s in t.staff)


@pytest.mark.parametrize(
    ("when", "in_hours"),
    [
        (london(2026, 11, 23, 8, 0), True),  # Monday 08:00
        (london(2026, 11, 23, 18, 29), True),
        (london(2026, 11, 23, 18, 30), False),
        (london(2026, 11, 23, 7, 59), False),
        (london(2026, 11, 21, 12, 0), False),  # Saturday
        (london(2026, 12, 25, 12, 0), False),  # bank holiday (Friday)
        (london(2026, 3, 30, 8, 30), True),  # first Monday of summer time
    ],
)
def test_working_hours(when: datetime, in_hours: bool) -> None:
    assert is_in_hours(when, ORG.calendar) is in_hours
    assert is_in_hours(when.astimezone(UTC), ORG.calendar) is in_hours


def test_steps_are_cumulative_and_repeat() -> None:
    policy = Policy(
        levels=(
            Level(after_s=0, notify=("rota:monitoring_nurse",)),
            Level(after_s=120, notify=("role:community_matron",)),
            Level(after_s=300, notify=("role:gp",)),
        ),
        repeat=1,
    )
    t0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
    steps = plan_steps(policy, t0)
    assert [(s.step_no, s.level, (s.due_at - t0).total_seconds()) for s in steps] == [
        (1, 1, 0),
        (2, 2, 120),
        (3, 3, 420),
        (4, 1, 420),
        (5, 2, 540),
        (6, 3, 840),
    ]


def test_out_of_hours_goes_to_rapid_response() -> None:
    team, policy = policy_for(ORG, "deal", "red", london(2026, 11, 23, 22, 0))
    assert team == "skc-rapid-response"
    assert policy.levels[0].notify == ("rota:rapid_response",)
    team, policy = policy_for(ORG, "deal", "red", london(2026, 11, 23, 10, 0))
    assert team == "deal"
    assert policy.levels[1].after_s == 120


def test_who_is_on_duty() -> None:
    weekday = london(2026, 11, 23, 10, 0)
    weekend = london(2026, 11, 21, 10, 0)
    nurse = resolve_targets(ORG, "deal", ("rota:monitoring_nurse",), weekday).people
    assert [s.id for s in nurse] == ["deal.mn1"]
    weekend_nurse = resolve_targets(ORG, "deal", ("rota:monitoring_nurse",), weekend).people
    assert [s.id for s in weekend_nurse] == ["deal.mn2"]
    night = resolve_targets(
        ORG, "skc-rapid-response", ("rota:rapid_response",), london(2026, 11, 24, 2, 0)
    ).people  # the shift that began at 18:30
    assert [s.id for s in night] == ["skc-rapid-response.rr1"]
    gp_and_rapid = resolve_targets(ORG, "deal", ("role:gp", "role:rapid_response"), weekday).people
    assert {s.id for s in gp_and_rapid} == {
        "deal.gp1",
        "deal.gp2",
        "skc-rapid-response.rr1",
        "skc-rapid-response.rr2",
        "skc-rapid-response.rr3",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("rota:monitoring_nurse", "rota:astronaut", 1), "unknown target"),
        (
            lambda t: t.replace("out_of_hours: skc-rapid-response", "out_of_hours: nowhere", 1),
            "not defined",
        ),
        (lambda t: t.replace("role: monitoring_nurse", "role: pilot", 1), "role"),
        (lambda t: t + "\n  : [", "not valid YAML"),
        (lambda t: t.replace("after_s: 120", "after_s: -5", 1), "greater than or equal"),
    ],
)
def test_bad_organisation_files_are_refused(change: object, message: str) -> None:
    assert callable(change)
    with pytest.raises(ValidationError, match=message):
        load_org_file(change(EXAMPLE))


def test_acknowledgement_timeout_is_part_of_the_policy() -> None:
    red = ORG.teams["deal"].escalation["red"].in_hours
    assert red.ack_timeout_s == 1800
    assert plan_steps(red, datetime(2026, 1, 1, tzinfo=UTC))[-1].due_at - datetime(
        2026, 1, 1, tzinfo=UTC
    ) == timedelta(seconds=840)


def test_technical_alerts_go_first_to_the_patients_named_coordinator() -> None:
    policy = ORG.teams["deal"].escalation["technical"].in_hours
    assert policy.levels[0].notify == ("patient:care_coordinator",)
    named = resolve_targets(
        ORG,
        "deal",
        policy.levels[0].notify,
        london(2026, 11, 23, 10, 0),
        care_coordinator="deal.cc1",
    ).people
    assert [s.id for s in named] == ["deal.cc1"]
    assert (
        resolve_targets(ORG, "deal", policy.levels[0].notify, london(2026, 11, 23, 10, 0)).people
        == ()
    )  # none named: the next level


def test_a_target_that_no_longer_exists_is_named_not_raised() -> None:
    found = resolve_targets(
        ORG, "deal", ("person:deal.gone", "rota:monitoring_nurse"), london(2026, 11, 23, 10, 0)
    )
    assert [s.id for s in found.people] == ["deal.mn1"]
    assert found.missing == ("person:deal.gone",)
    assert resolve_targets(ORG, "nowhere", ("role:gp",), london(2026, 11, 23, 10, 0)).missing == (
        "team:nowhere",
    )
