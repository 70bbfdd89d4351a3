"""The declarative organisation file (docs/alerts.md): localities, neighbourhood teams and their
GP practices, staff and roles, rotas, working hours with an out-of-hours route, escalation
policies and notification channels. Loaded with ``homeward teams load FILE``.

Everything here is pure: ``load_org_file`` validates text, ``on_duty`` answers from the
file and a time. A file is refused as a whole, with every problem named.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    "commissioner",  # reads the outcomes report's aggregates only (docs/outcomes.md)
]
ROLES: tuple[str, ...] = get_args(Role)
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAYS: tuple[Day, ...] = DAYS[:5]
PRIORITIES = ("red", "amber", "technical")
TARGET_HELP = "role:<role>, rota:<role>, person:<staff id> or patient:care_coordinator"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_EMAIL = r"^[^@\s]+@[^@\s]+$"


def _not_a_number(value: Any) -> Any:
    if isinstance(value, int | float):  # YAML 1.1 reads 18:30 unquoted as 1110 (base 60)
        raise ValueError("write clock times in quotes, e.g. '18:30'")
    return value


def _wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a clock time takes no zone: the calendar's time zone applies")
    return value


ClockTime = Annotated[time, BeforeValidator(_not_a_number), AfterValidator(_wall_clock)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Calendar(_Model):
    """Working hours; outside them (and on bank holidays) alerts take the out-of-hours route."""

    timezone: str = "Europe/London"
    days: tuple[Day, ...] = WEEKDAYS
    opens: ClockTime = time(8, 0)
    closes: ClockTime = time(18, 30)
    bank_holidays: tuple[date, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Europe/London)"
            ) from None
        return value

    @model_validator(mode="after")
    def _opens_before_closes(self) -> Calendar:
        if self.opens >= self.closes:
            raise ValueError("working hours must open before they close")
        return self

    def local(self, when: datetime) -> datetime:
        """``when`` on the wall clock of the calendar's zone (daylight saving included)."""
        if when.utcoffset() is None:
            raise HomewardValidationError(f"{when} has no time zone; times must be aware")
        return when.astimezone(ZoneInfo(self.timezone))


class StaffMember(_Model):
    id: str = Field(pattern=r"^[a-z0-9._-]+$")
    name: str = Field(min_length=1)
    roles: tuple[Role, ...] = Field(min_length=1)
    email: str | None = Field(default=None, pattern=_EMAIL)


Staff = StaffMember  # the earlier name, still used by callers


class Shift(_Model):
    """A weekly shift: ``days`` are the days it starts on; ``ends`` <= ``starts`` means it
    runs through midnight into the next day."""

    staff: str
    role: Role
    days: tuple[Day, ...] = Field(min_length=1)
    starts: ClockTime
    ends: ClockTime

    @model_validator(mode="after")
    def _has_length(self) -> Shift:
        if self.starts == self.ends:
            raise ValueError("a shift cannot start and end at the same time (split a 24 h shift)")
        return self

    def covers(self, local: datetime) -> bool:
        """Is this shift on at ``local`` (a wall-clock time in the calendar's zone)?"""
        now, today = local.time(), DAYS[local.weekday()]
        yesterday = DAYS[(local.weekday() - 1) % 7]
        if self.starts < self.ends:
            return today in self.days and self.starts <= now < self.ends
        return (today in self.days and now >= self.starts) or (
            yesterday in self.days and now < self.ends
        )

    def week_minutes(self) -> list[tuple[int, int]]:
        """The shift as [start, end) minute intervals of a week starting Monday 00:00."""
        start_min = self.starts.hour * 60 + self.starts.minute
        end_min = self.ends.hour * 60 + self.ends.minute
        week, out = 7 * 24 * 60, []
        for day in self.days:
            start = DAYS.index(day) * 24 * 60 + start_min
            end = start - start_min + end_min + (24 * 60 if end_min <= start_min else 0)
            out += [(start, min(end, week))] + ([(0, end - week)] if end > week else [])
        return out


class Level(_Model):
    after_s: float = Field(ge=0, description="seconds after the previous level (or raising)")
    notify: tuple[str, ...] = Field(min_length=1, description=TARGET_HELP)

    @field_validator("notify")
    @classmethod
    def _targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for target in value:
            kind, _, name = target.partition(":")
            role_ok = kind in ("role", "rota") and name in ROLES
            if not (role_ok or (kind == "person" and name) or target == "patient:care_coordinator"):
                raise ValueError(f"unknown target {target!r} (use {TARGET_HELP})")
        return value


class Policy(_Model):
    """One ladder: ordered levels, cycled ``repeat`` more times, and how long an
    acknowledgement holds escalation before it resumes."""

    levels: tuple[Level, ...] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=10)
    ack_timeout_s: float | None = Field(default=None, gt=0)


class EscalationPolicy(_Model):
    """A team's policy for one priority. Without ``out_of_hours`` the team's out-of-hours
    route (e.g. the locality's rapid-response service) takes alerts out of hours."""

    in_hours: Policy
    out_of_hours: Policy | None = None


class Channels(_Model):
    webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    webhook_secret_env: str | None = None  # the NAME of the variable holding the secret
    emails: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _secret_by_name(self) -> Channels:
        env = self.webhook_secret_env
        if env is not None and not _ENV_NAME.match(env):
            raise ValueError(f"webhook_secret_env {env!r} must name an environment variable")
        if self.webhook_url and not env:
            raise ValueError("a webhook needs webhook_secret_env (the variable with its secret)")
        bad = [e for e in self.emails if not re.match(_EMAIL, e)]
        if bad:
            raise ValueError(f"not e-mail addresses: {', '.join(bad)}")
        return self


class Team(_Model):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    name: str
    practices: tuple[str, ...] = ()
    out_of_hours: str | None = None  # the team that takes this team's alerts out of hours
    staff: tuple[StaffMember, ...] = ()
    rota: tuple[Shift, ...] = ()
    escalation: dict[str, EscalationPolicy]  # by priority: red, amber, technical
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

    @property
    def staff(self) -> dict[str, StaffMember]:
        return {s.id: s for loc in self.localities for t in loc.teams for s in t.staff}

    @property
    def locality_names(self) -> list[str]:
        return [loc.name for loc in self.localities]

    @model_validator(mode="after")
    def _references(self) -> Organisation:
        teams = [t for loc in self.localities for t in loc.teams]
        ids = [t.id for t in teams]
        staff_ids = [s.id for t in teams for s in t.staff]
        problems = [f"team {i} appears twice" for i in _twice(ids)]
        problems += [f"staff {i} appears twice" for i in _twice(staff_ids)]
        problems += [f"locality {n} appears twice" for n in _twice(self.locality_names)]
        for team in teams:
            problems += _team_problems(team, set(ids), set(staff_ids))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _twice(values: list[str]) -> list[str]:
    return sorted({v for v in values if values.count(v) > 1})


def _team_problems(team: Team, team_ids: set[str], staff_ids: set[str]) -> list[str]:
    mine = {s.id: s for s in team.staff}
    problems = [] if "red" in team.escalation else [f"{team.id}: needs a red escalation policy"]
    unknown = sorted(set(team.escalation) - set(PRIORITIES))
    if unknown:
        problems.append(
            f"{team.id}: unknown priorities {', '.join(unknown)} (red, amber, technical)"
        )
    if team.out_of_hours == team.id:
        problems.append(f"{team.id}: cannot be its own out-of-hours team")
    elif team.out_of_hours and team.out_of_hours not in team_ids:
        problems.append(f"{team.id}: out_of_hours team {team.out_of_hours} not defined")
    for shift in team.rota:
        if shift.staff not in mine:
            problems.append(f"{team.id}: rota names {shift.staff}, not in the team")
        elif shift.role not in mine[shift.staff].roles:
            problems.append(f"{team.id}: rota has {shift.staff} as {shift.role}, a role not held")
    for i, a in enumerate(team.rota):
        for b in team.rota[i + 1 :]:
            if (a.staff, a.role) == (b.staff, b.role) and _overlap(a, b):
                problems.append(f"{team.id}: {a.staff} has overlapping {a.role} shifts")
    for priority, policy in team.escalation.items():
        for ladder in (policy.in_hours, policy.out_of_hours):
            for level in ladder.levels if ladder else ():
                for target in level.notify:
                    kind, _, name = target.partition(":")
                    if kind == "person" and name not in staff_ids:
                        problems.append(
                            f"{team.id} {priority} policy: unknown target {target!r} "
                            f"(no staff member {name})"
                        )
    return problems


def _overlap(a: Shift, b: Shift) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a.week_minutes() for s2, e2 in b.week_minutes())


def on_duty(org: Organisation, team: str, role: str, when: datetime) -> list[StaffMember]:
    """The team's staff rostered in ``role`` at ``when`` (an aware time), in file order.
    Empty when nobody is rostered; callers decide the fallback."""
    found = org.teams.get(team)
    if found is None:
        raise HomewardValidationError(f"no team {team!r} in the organisation file")
    local = org.calendar.local(when)
    rostered = {s.staff for s in found.rota if s.role == role and s.covers(local)}
    return [s for s in found.staff if s.id in rostered and role in s.roles]


def load_org_file(text: str) -> Organisation:
    """Parse and validate an organisation file (YAML); refused as a whole if anything is wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HomewardValidationError(f"not valid YAML: {exc}") from exc
    try:
        return Organisation.model_validate(document)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {_plain(e['type'], e['msg'])}"
            for e in exc.errors(include_url=False)
        )
        raise HomewardValidationError(f"organisation file refused: {details}") from exc


def _plain(kind: str, message: str) -> str:
    if kind == "too_short":
        return "needs at least one entry"
    return message.removeprefix("Value error, ")
