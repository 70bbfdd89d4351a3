"""The organisation file: the demo's example loads and covers the week; who is on duty on a
weekday, at the weekend and at night; bad files are refused with every problem named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from alerts.escalation import is_in_hours
from alerts.teams import ROLES, Organisation, load_org_file, on_duty
from homeward.errors import ValidationError

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
ORG = load_org_file(EXAMPLE)
LONDON = ZoneInfo("Europe/London")
NEIGHBOURHOODS = {
    "South Kent Coast": ["deal", "dover", "folkestone", "romney-marsh"],
    "Thanet": ["broadstairs", "margate", "ramsgate"],
}
RAPID_RESPONSE = {"South Kent Coast": "skc-rapid-response", "Thanet": "thanet-rapid-response"}


def london(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=LONDON)


def ids(people: list[Any]) -> list[str]:
    return [p.id for p in people]


def test_the_example_is_the_fictional_design() -> None:
    assert ORG.locality_names == ["South Kent Coast", "Thanet"]
    for locality in ORG.localities:
        teams = [t.id for t in locality.teams]
        assert teams == [*NEIGHBOURHOODS[locality.name], RAPID_RESPONSE[locality.name]]
    for team_id in [t for teams in NEIGHBOURHOODS.values() for t in teams]:
        team = ORG.teams[team_id]
        assert 1 <= len(team.practices) <= 2
        assert all(p.endswith("(fictional)") for p in team.practices)
        assert {r for s in team.staff for r in s.roles} == set(ROLES) - {
            "rapid_response",
            "team_lead",
            "commissioner",  # reads the outcomes report; no neighbourhood team's member
        }
        assert team.out_of_hours in RAPID_RESPONSE.values()
        assert set(team.escalation) == {"red", "amber", "technical"}
        red, amber = team.escalation["red"].in_hours, team.escalation["amber"].in_hours
        assert [lv.after_s for lv in red.levels] == [0, 120, 300]
        assert red.levels[0].notify == ("rota:monitoring_nurse",)
        assert red.levels[2].notify == ("role:gp", "role:rapid_response")
        assert [lv.after_s for lv in amber.levels] == [0, 3600]
    staff = ORG.staff.values()
    assert all(s.name.endswith("(fictional)") for s in staff)
    assert all(s.email is None or s.email.endswith(".invalid") for s in staff)


def test_the_file_survives_the_round_trip_through_the_database() -> None:
    assert Organisation.model_validate(ORG.model_dump(mode="json")) == ORG
    assert load_org_file(EXAMPLE) == ORG


@pytest.mark.parametrize(
    ("team", "role", "when", "expected"),
    [
        ("deal", "monitoring_nurse", london(23, 10), ["deal.mn1"]),  # Monday
        ("deal", "monitoring_nurse", london(21, 10), ["deal.mn2"]),  # Saturday
        ("deal", "monitoring_nurse", london(23, 2), []),  # night: nobody in the team
        ("deal", "community_matron", london(23, 18, 29), ["deal.matron1"]),
        ("deal", "community_matron", london(23, 18, 30), []),
        ("deal", "gp", london(23, 10), []),  # GPs are not on the rota
        ("skc-rapid-response", "rapid_response", london(24, 2), ["skc-rapid-response.rr1"]),
        ("skc-rapid-response", "rapid_response", london(23, 7, 59), ["skc-rapid-response.rr1"]),
        ("skc-rapid-response", "rapid_response", london(23, 8), ["skc-rapid-response.rr2"]),
        # the night the clocks go forward (01:00 GMT → 02:00 BST): 03:30 BST
        (
            "thanet-rapid-response",
            "rapid_response",
            london(29, 3, 30, month=3),
            ["thanet-rapid-response.rr1"],
        ),
    ],
)
def test_who_is_on_duty(team: str, role: str, when: datetime, expected: list[str]) -> None:
    assert ids(on_duty(ORG, team, role, when)) == expected
    assert ids(on_duty(ORG, team, role, when.astimezone(UTC))) == expected


@pytest.mark.parametrize("monday", [london(23, 0), london(23, 0, month=3), london(19, 0, month=10)])
def test_the_rotas_cover_the_whole_week(monday: datetime) -> None:
    """In hours a monitoring nurse in every team; at all times someone in rapid response.
    Checked every 15 minutes, including the weeks the clocks change."""
    instant = monday.astimezone(UTC)
    while instant < (monday + timedelta(days=7)).astimezone(UTC):
        for locality, teams in NEIGHBOURHOODS.items():
            assert on_duty(ORG, RAPID_RESPONSE[locality], "rapid_response", instant), instant
            if is_in_hours(instant, ORG.calendar):
                for team in teams:
                    assert on_duty(ORG, team, "monitoring_nurse", instant), (team, instant)
        instant += timedelta(minutes=15)


def test_on_duty_for_an_unknown_team_is_refused() -> None:
    with pytest.raises(ValidationError, match="no team 'hythe'"):
        on_duty(ORG, "hythe", "gp", london(23, 10))


def _person(person_id: str, role: str) -> dict[str, Any]:
    return {"id": person_id, "name": f"{person_id} (fictional)", "roles": [role]}


def _ladder(*targets: str) -> dict[str, Any]:
    return {"in_hours": {"levels": [{"after_s": 0, "notify": list(targets)}]}}


MINIMAL: dict[str, Any] = {
    "calendar": {"timezone": "Europe/London", "opens": "08:00", "closes": "18:30"},
    "localities": [
        {
            "name": "Test Coast",
            "teams": [
                {
                    "id": "deal",
                    "name": "Deal",
                    "out_of_hours": "rr",
                    "staff": [_person("a.nurse", "monitoring_nurse"), _person("a.gp", "gp")],
                    "rota": [
                        {
                            "staff": "a.nurse",
                            "role": "monitoring_nurse",
                            "days": ["mon", "tue"],
                            "starts": "08:00",
                            "ends": "18:30",
                        }
                    ],
                    "escalation": {"red": _ladder("rota:monitoring_nurse", "person:a.gp")},
                    "channels": {"webhook_url": None, "webhook_secret_env": None},
                },
                {
                    "id": "rr",
                    "name": "Rapid response",
                    "staff": [_person("rr.one", "rapid_response")],
                    "escalation": {"red": _ladder("role:rapid_response")},
                },
            ],
        }
    ],
}
Change = Callable[[dict[str, Any]], None]


def deal(doc: dict[str, Any]) -> dict[str, Any]:
    team: dict[str, Any] = doc["localities"][0]["teams"][0]
    return team


def _set(path: str, value: Any) -> Change:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return change


DEAL = "localities.0.teams.0"
RED = f"{DEAL}.escalation.red.in_hours"
SHIFT = {"staff": "a.nurse", "role": "monitoring_nurse", "days": ["tue"]}
BAD: list[tuple[str, Change, str]] = [
    (
        "unknown role",
        _set(f"{DEAL}.staff.0.roles.0", "astronaut"),
        r"staff\.0\.roles\.0: Input should be 'monitoring_nurse'",
    ),
    (
        "missing person",
        _set(f"{RED}.levels.0.notify.1", "person:nobody"),
        "unknown target 'person:nobody' \\(no staff member nobody\\)",
    ),
    (
        "unknown target kind",
        _set(f"{RED}.levels.0.notify.0", "pager:123"),
        "unknown target 'pager:123'",
    ),
    (
        "role target unknown",
        _set(f"{RED}.levels.0.notify.0", "rota:astronaut"),
        "unknown target 'rota:astronaut'",
    ),
    ("duplicate team", _set("localities.0.teams.1.id", "deal"), "team deal appears twice"),
    (
        "duplicate staff",
        _set("localities.0.teams.1.staff.0.id", "a.nurse"),
        "staff a.nurse appears twice",
    ),
    ("rota outsider", _set(f"{DEAL}.rota.0.staff", "rr.one"), "rota names rr.one, not in the team"),
    (
        "rota role not held",
        _set(f"{DEAL}.rota.0.role", "gp"),
        "rota has a.nurse as gp, a role not held",
    ),
    (
        "overlapping shifts",
        lambda d: deal(d)["rota"].append({**SHIFT, "starts": "12:00", "ends": "20:00"}),
        "a.nurse has overlapping monitoring_nurse shifts",
    ),
    (
        "overnight overlap",
        lambda d: deal(d)["rota"].append(
            {**SHIFT, "days": ["mon"], "starts": "22:00", "ends": "08:30"}
        ),
        "overlapping",
    ),
    ("empty shift", _set(f"{DEAL}.rota.0.ends", "08:00"), "cannot start and end at the same time"),
    ("unquoted time", _set(f"{DEAL}.rota.0.ends", 1110), "write clock times in quotes"),
    (
        "unknown zone",
        _set("calendar.timezone", "Europe/Londres"),
        "unknown time zone 'Europe/Londres'",
    ),
    ("inside-out hours", _set("calendar.opens", "19:00"), "open before they close"),
    (
        "bad bank holiday",
        _set("calendar.bank_holidays", ["2026-02-30"]),
        r"calendar\.bank_holidays\.0",
    ),
    (
        "webhook without secret",
        _set(f"{DEAL}.channels.webhook_url", "https://hooks.example.invalid/x"),
        "needs webhook_secret_env",
    ),
    (
        "secret that is not a name",
        _set(f"{DEAL}.channels.webhook_secret_env", "s3cret value"),
        "must name an environment variable",
    ),
    ("webhook not http", _set(f"{DEAL}.channels.webhook_url", "ftp://x"), "webhook_url"),
    ("bad e-mail", _set(f"{DEAL}.staff.0.email", "nobody"), r"staff\.0\.email"),
    (
        "unknown priority",
        _set(f"{DEAL}.escalation.purple", _ladder("role:gp")),
        "unknown priorities purple",
    ),
    (
        "no red policy",
        lambda d: deal(d)["escalation"].update(amber=deal(d)["escalation"].pop("red")),
        "deal: needs a red escalation policy",
    ),
    (
        "own out-of-hours",
        _set(f"{DEAL}.out_of_hours", "deal"),
        "cannot be its own out-of-hours team",
    ),
    (
        "unknown out-of-hours",
        _set(f"{DEAL}.out_of_hours", "nowhere"),
        "out_of_hours team nowhere not defined",
    ),
    ("negative delay", _set(f"{RED}.levels.0.after_s", -5), "greater than or equal to 0"),
    (
        "zero ack timeout",
        _set(f"{RED}.ack_timeout_s", 0),
        "ack_timeout_s: Input should be greater than 0",
    ),
    (
        "misspelt key",
        lambda d: deal(d).update(escalaton={}),
        "escalaton: Extra inputs are not permitted",
    ),
    ("no levels", _set(f"{RED}.levels", []), "in_hours.levels: needs at least one entry"),
]


@pytest.mark.parametrize(("change", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_are_refused_with_a_clear_message(change: Change, message: str) -> None:
    doc = copy.deepcopy(MINIMAL)
    load_org_file(yaml.safe_dump(doc))  # the starting point is good
    change(doc)
    with pytest.raises(ValidationError, match=message) as refused:
        load_org_file(yaml.safe_dump(doc))
    assert str(refused.value).startswith("organisation file refused: ")
    assert "Value error" not in str(refused.value)


def test_every_problem_is_named_at_once() -> None:
    doc = copy.deepcopy(MINIMAL)
    _set(f"{DEAL}.out_of_hours", "nowhere")(doc)
    _set(f"{DEAL}.rota.0.staff", "rr.one")(doc)
    with pytest.raises(ValidationError) as refused:
        load_org_file(yaml.safe_dump(doc))
    assert "nowhere not defined" in str(refused.value)
    assert "rota names rr.one" in str(refused.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localities: [\n", "not valid YAML"),
        ("- just\n- a list\n", "file: Input should be a valid dictionary"),
        ("", "file: Input should be a valid dictionary"),
        (
            yaml.safe_dump(MINIMAL).replace("ends: '18:30'", "ends: 18:30"),
            "write clock times in quotes",
        ),
    ],
)
def test_text_that_is_not_an_organisation_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        load_org_file(text)


def test_different_people_may_overlap_and_a_shift_may_run_through_midnight() -> None:
    doc = copy.deepcopy(MINIMAL)
    deal(doc)["staff"].append(_person("b.nurse", "monitoring_nurse"))
    deal(doc)["rota"] += [
        {**SHIFT, "staff": "b.nurse", "days": ["mon"], "starts": "18:00", "ends": "09:00"},
    ]
    org = load_org_file(yaml.safe_dump(doc))
    mon_18 = datetime(2026, 11, 23, 18, 15, tzinfo=UTC)
    assert ids(on_duty(org, "deal", "monitoring_nurse", mon_18)) == ["a.nurse", "b.nurse"]
    tue_8 = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert ids(on_duty(org, "deal", "monitoring_nurse", tue_8)) == ["a.nurse", "b.nurse"]
    tue_9 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert ids(on_duty(org, "deal", "monitoring_nurse", tue_9)) == ["a.nurse"]
