"""The declarative organisation file (DESIGN §7): localities, neighbourhood teams and their
GP practices, staff and roles, rotas, working hours with an out-of-hours route, escalation
policies and notification channels. Loaded with ``homeward teams load FILE``.
"""

from __future__ import annotations

from datetime import time
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from homeward.errors import ValidationError as HomewardValidationError

Role = Literal[
    "monitoring_nurse",
    "community_matron",
    "district_nurse",
    "gp",
    "social_worker",
    "care_coordinator",
    "rapid_response",
    "team_lead",
]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Calendar(_Model):
    timezone: str = "Europe/London"
    days: tuple[Day, ...] = WEEKDAYS
    opens: time = time(8, 0)
    closes: time = time(18, 30)
    bank_holidays: tuple[str, ...] = ()  # ISO dates


class Staff(_Model):
    id: str = Field(pattern=r"^[a-z0-9._-]+$")
    name: str
    roles: tuple[Role, ...] = Field(min_length=1)
    email: str | None = None


class Shift(_Model):
    staff: str
    role: Role
    days: tuple[Day, ...] = Field(min_length=1)
    starts: time
    ends: time


class Level(_Model):
    after_s: float = Field(ge=0, description="seconds after the previous level (or raising)")
    notify: tuple[str, ...] = Field(
        min_length=1,
        description="role:<role>, person:<id>, rota:<role> (on duty now) or "
        "patient:care_coordinator (the patient's named coordinator)",
    )


class Policy(_Model):
    levels: tuple[Level, ...] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=10)
    ack_timeout_s: float | None = Field(default=None, gt=0)


class Policies(_Model):
    in_hours: Policy
    out_of_hours: Policy | None = None  # default: the out-of-hours team's in-hours policy


class Channels(_Model):
    webhook_url: str | None = None
    webhook_secret_env: str | None = None
    emails: tuple[str, ...] = ()


class Team(_Model):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    name: str
    practices: tuple[str, ...] = ()
    out_of_hours: str | None = None
    staff: tuple[Staff, ...] = ()
    rota: tuple[Shift, ...] = ()
    escalation: dict[str, Policies]  # by priority: red, amber, technical
    channels: Channels = Channels()


class Locality(_Model):
    name: str
    teams: tuple[Team, ...]


class Organisation(_Model):
    calendar: Calendar = Calendar()
    localities: tuple[Locality, ...]

    @property
    def teams(self) -> dict[str, Team]:
        return {t.id: t for loc in self.localities for t in loc.teams}

    @model_validator(mode="after")
    def _references(self) -> Organisation:
        teams = [t for loc in self.localities for t in loc.teams]
        problems: list[str] = []
        ids = [t.id for t in teams]
        problems += [
            f"team {t} appears twice" for t in sorted({i for i in ids if ids.count(i) > 1})
        ]
        staff_ids = [s.id for t in teams for s in t.staff]
        problems += [
            f"staff {s} appears twice"
            for s in sorted({i for i in staff_ids if staff_ids.count(i) > 1})
        ]
        for team in teams:
            mine = {s.id: s for s in team.staff}
            if "red" not in team.escalation:
                problems.append(f"{team.id}: needs at least a red escalation policy")
            unknown = set(team.escalation) - {"red", "amber", "technical"}
            if unknown:
                problems.append(f"{team.id}: unknown priorities {', '.join(sorted(unknown))}")
            if team.out_of_hours and team.out_of_hours not in ids:
                problems.append(f"{team.id}: out_of_hours team {team.out_of_hours} not defined")
            for shift in team.rota:
                if shift.staff not in mine:
                    problems.append(f"{team.id}: rota names {shift.staff}, not in the team")
                elif shift.role not in mine[shift.staff].roles:
                    problems.append(f"{team.id}: {shift.staff} is not a {shift.role}")
            for priority, policies in team.escalation.items():
                for policy in (policies.in_hours, policies.out_of_hours):
                    for level in policy.levels if policy else ():
                        for target in level.notify:
                            problems += _check_target(team.id, priority, target, set(staff_ids))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _check_target(team: str, priority: str, target: str, staff: set[str]) -> list[str]:
    kind, _, value = target.partition(":")
    if kind in ("role", "rota") and value in get_args(Role):
        return []
    if kind == "person" and value in staff:
        return []
    if target == "patient:care_coordinator":
        return []
    return [
        f"{team} {priority} policy: unknown target {target!r} "
        "(role:<role>, rota:<role> or person:<staff id>)"
    ]


def load_org_file(text: str) -> Organisation:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HomewardValidationError(f"not valid YAML: {exc}") from exc
    try:
        return Organisation.model_validate(document)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise HomewardValidationError(f"organisation file refused: {details}") from exc
