"""Escalation as pure decisions: working hours, the planned steps of a policy, which step is
due now, whether the hours at its due time call for another ladder, and who a step
notifies. Nothing here reads a clock or does I/O; alerts/escalation_store.py runs these
decisions on the stored alert and steps.

How a restart stays exact: the steps are planned when the alert is raised, from the policy
in force then (the alert keeps that snapshot), and planned again — numbering on from the
last step, the unfired ones withdrawn — when its priority rises or when the hours at a
step's due time (in / out of hours) call for another ladder (``replan_for``). The store
records each fired step under a unique key (alert id, step number). ``next_due_step``
recomputes everything from the stored steps, the fired step numbers and the alert (its
acknowledgements and snoozes, kept as ``holds``), so after a crash an overdue step is
returned at once, and once it is recorded it is never returned again.

Holds: while an alert is acknowledged or snoozed, escalation waits. Steps that were still
pending when a hold began move later by the hold's length: escalation resumes where it
paused, when an acknowledgement expires as when a snooze ends or is ended early. A step
already overdue when a hold began (the process was down) fires as soon as the hold ends.
A hold that began before a step was planned does not move it. All arithmetic is in UTC,
so a delay of 3600 s is an hour of real time on the days the clocks change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.alert import Alert, Hold, State
from alerts.teams import (
    DAYS,
    Calendar,
    EscalationPolicy,
    Organisation,
    Policy,
    StaffMember,
    on_duty,
)
from homeward.errors import ValidationError


def is_in_hours(when: datetime, calendar: Calendar) -> bool:
    """Working hours on the calendar's wall clock (daylight saving followed), bank
    holidays excluded."""
    local = calendar.local(when)
    if local.date() in calendar.bank_holidays or DAYS[local.weekday()] not in calendar.days:
        return False
    return calendar.opens <= local.time() < calendar.closes


def policy_for(
    org: Organisation, team_id: str, priority: str, when: datetime
) -> tuple[str, Policy]:
    """The (team, ladder) that handles an alert raised at ``when``: in hours the patient's
    team; out of hours its out-of-hours ladder, else its out-of-hours team's (rapid
    response). A priority without a policy uses the team's red one (fail safe)."""
    team = org.teams[team_id]
    policy = team.escalation.get(priority) or team.escalation["red"]
    if is_in_hours(when, org.calendar):
        return team.id, policy.in_hours
    if policy.out_of_hours is not None:
        return team.id, policy.out_of_hours
    if team.out_of_hours:
        ooh = org.teams[team.out_of_hours]
        return ooh.id, (ooh.escalation.get(priority) or ooh.escalation["red"]).in_hours
    return team.id, policy.in_hours


@dataclass(frozen=True, slots=True)
class EscalationStep:
    step_no: int  # 1, 2, … across repeat cycles: with the alert id, the step's unique key
    level: int  # 1-based level within the ladder
    due_at: datetime  # UTC, as planned when the alert was raised (before any hold)
    targets: tuple[str, ...]  # role:…, rota:…, person:…, patient:care_coordinator
    cycle: int = 1
    planned_at: datetime | None = None  # holds that began earlier do not move this step


def plan_steps(
    policy: Policy | EscalationPolicy,
    raised_at: datetime,
    in_hours: bool = True,
    *,
    first_step_no: int = 1,
) -> list[EscalationStep]:
    """Every level in order, each ``after_s`` after the one before (the first after
    ``raised_at``), then the whole ladder ``repeat`` more times. Given a team's
    ``EscalationPolicy``, ``in_hours`` picks the ladder; a ladder is used as it is."""
    if raised_at.utcoffset() is None:
        raise ValidationError("raised_at has no time zone; times must be aware")
    ladder = policy if isinstance(policy, Policy) else _ladder(policy, in_hours)
    steps: list[EscalationStep] = []
    due = raised_at.astimezone(UTC)
    for cycle in range(1, ladder.repeat + 2):
        for level_no, level in enumerate(ladder.levels, start=1):
            due += timedelta(seconds=level.after_s)
            steps.append(
                EscalationStep(
                    first_step_no + len(steps), level_no, due, level.notify, cycle, raised_at
                )
            )
    return steps


def _ladder(policy: EscalationPolicy, in_hours: bool) -> Policy:
    if in_hours:
        return policy.in_hours
    if policy.out_of_hours is None:
        raise ValidationError(
            "this policy has no out-of-hours ladder: use policy_for, which follows the "
            "team's out-of-hours route"
        )
    return policy.out_of_hours


@dataclass(frozen=True, slots=True)
class EscalationPlan:
    """What an alert keeps for life: who handles it, with which ladder, and its steps."""

    team_id: str
    in_hours: bool
    policy: Policy
    steps: tuple[EscalationStep, ...]


def plan_alert(
    org: Organisation, team_id: str, priority: str, raised_at: datetime, first_step_no: int = 1
) -> EscalationPlan:
    """The plan from ``raised_at`` (raised, or planned again from then)."""
    team, ladder = policy_for(org, team_id, priority, raised_at)
    in_hours = is_in_hours(raised_at, org.calendar)
    steps = plan_steps(ladder, raised_at, first_step_no=first_step_no)
    return EscalationPlan(team, in_hours, ladder, tuple(steps))


def replan_for(
    org: Organisation,
    team_id: str,
    priority: str,
    planned: tuple[str, Policy, bool],
    due_at: datetime,
    first_step_no: int,
) -> EscalationPlan | None:
    """In or out of hours is decided at each step's due time. ``planned`` is the (team,
    ladder, in hours) the steps were planned with. When the hours at ``due_at`` are not
    the planned ones and they route the alert to another (team, ladder), the alert is
    planned again from ``due_at`` under the ladder in force then: an alert raised at 18:25
    in hours goes to the out-of-hours service with its first step due after 18:30, and
    back to its team with the first step due after 08:00. ``None``: the planned steps
    stand (a new organisation file alone does not change an alert's plan)."""
    team, ladder, in_hours = planned
    if is_in_hours(due_at, org.calendar) == in_hours:
        return None
    if policy_for(org, team_id, priority, due_at) == (team, ladder):
        return None
    return plan_alert(org, team_id, priority, due_at, first_step_no)


def _merged(holds: Iterable[Hold]) -> list[tuple[datetime, datetime | None]]:
    """Holds as disjoint, sorted UTC intervals; ``None`` is an open end."""
    out: list[tuple[datetime, datetime | None]] = []
    for hold in sorted(holds, key=lambda h: h.start):
        start = hold.start.astimezone(UTC)
        end = hold.end.astimezone(UTC) if hold.end is not None else None
        if out and (out[-1][1] is None or start <= out[-1][1]):
            last_start, last_end = out[-1]
            longer = None if end is None or last_end is None else max(end, last_end)
            out[-1] = (last_start, longer)
        else:
            out.append((start, end))
    return out


def effective_due_at(alert: Alert, step: EscalationStep) -> datetime | None:
    """When ``step`` is due once the alert's holds are allowed for; ``None`` while held
    with no end (acknowledged, no acknowledgement timeout)."""
    due = step.due_at.astimezone(UTC)
    holds = alert.holds
    if step.planned_at is not None:
        holds = tuple(h for h in holds if h.start >= step.planned_at)
    for start, end in _merged(holds):
        if start < due:
            if end is None:
                return None
            due += end - start
    return due


def _held(alert: Alert, now: datetime) -> bool:
    if alert.state is State.ACKNOWLEDGED or alert.is_snoozed(now):
        return True
    return any(s <= now and (e is None or now < e) for s, e in _merged(alert.holds))


def _pending(
    alert: Alert, steps: Iterable[EscalationStep], fired_steps: Collection[int]
) -> list[tuple[datetime, EscalationStep]]:
    timed = [(effective_due_at(alert, s), s) for s in steps if s.step_no not in fired_steps]
    return sorted(((d, s) for d, s in timed if d is not None), key=lambda p: (p[0], p[1].step_no))


def next_due_step(
    alert: Alert, steps: Iterable[EscalationStep], fired_steps: Collection[int], now: datetime
) -> EscalationStep | None:
    """The step to fire now, or ``None``: nothing for a resolved or acknowledged alert
    (apply ``AckTimeout`` first when the acknowledgement has expired), nothing while
    snoozed; otherwise the earliest unfired step whose (hold-adjusted) time has come.
    Fire it, record its number, and ask again: several overdue steps fire one by one."""
    if alert.state is State.RESOLVED or _held(alert, now):
        return None
    pending = _pending(alert, steps, fired_steps)
    return pending[0][1] if pending and pending[0][0] <= now else None


def next_check_at(
    alert: Alert, steps: Iterable[EscalationStep], fired_steps: Collection[int], now: datetime
) -> datetime | None:
    """When to look again (a timer derived from stored data): the acknowledgement's expiry
    while acknowledged, the snooze's end while snoozed, else the next step's time."""
    if alert.state is State.RESOLVED:
        return None
    if alert.state is State.ACKNOWLEDGED:
        return alert.ack_expires_at
    if alert.is_snoozed(now):
        return alert.snoozed_until
    pending = _pending(alert, steps, fired_steps)
    return max(pending[0][0], now) if pending else None


@dataclass(frozen=True, slots=True)
class Recipients:
    """Who a step reaches, and the targets that no longer exist in the organisation file
    (a person or team a later ``teams load`` removed): the store sends those to the
    team's single point of access instead and tells the team lead."""

    people: tuple[StaffMember, ...]
    missing: tuple[str, ...] = ()


def resolve_targets(
    org: Organisation,
    team_id: str,
    notify: tuple[str, ...],
    when: datetime,
    care_coordinator: str | None = None,
) -> Recipients:
    """The people a step notifies. ``role:`` everyone with the role in the team (or, when
    the team has none, its out-of-hours team); ``rota:`` those with the role on duty now
    (everyone with the role when nobody is rostered: fail open); ``person:`` that person;
    ``patient:care_coordinator`` the patient's named care coordinator. A target naming a
    person, or a handling team, that is not in ``org`` is returned as missing."""
    team = org.teams.get(team_id)
    if team is None:
        return Recipients((), (f"team:{team_id}",))
    everyone = org.staff
    found: dict[str, StaffMember] = {}
    missing: list[str] = []
    for target in notify:
        kind, _, value = target.partition(":")
        if kind == "person":
            if value in everyone:
                found[value] = everyone[value]
            else:
                missing.append(target)
            continue
        if target == "patient:care_coordinator":
            if care_coordinator in everyone:
                found[care_coordinator] = everyone[care_coordinator]
            continue
        ooh = [org.teams[team.out_of_hours]] if team.out_of_hours in org.teams else []
        for candidate in [team, *ooh]:
            holders = [s for s in candidate.staff if value in s.roles]
            if kind == "rota":
                holders = on_duty(org, candidate.id, value, when) or holders
            if holders:
                found.update((s.id, s) for s in holders)
                break
    return Recipients(tuple(found.values()), tuple(missing))


def working_hours(calendar: Calendar) -> str:
    return (
        f"{', '.join(calendar.days)} {calendar.opens:%H:%M}–{calendar.closes:%H:%M} "
        f"{calendar.timezone}"
    )
