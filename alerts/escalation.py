"""Escalation as pure decisions: working hours, the planned steps of a policy, and who a
step notifies. The steps and their due times are stored with the alert, so timers are
derived from the database — a restart loses none and fires none twice (see
alerts/escalation_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.teams import Calendar, Organisation, Policy, Shift, Staff

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def is_in_hours(when: datetime, calendar: Calendar) -> bool:
    local = when.astimezone(ZoneInfo(calendar.timezone))
    if local.date().isoformat() in calendar.bank_holidays:
        return False
    if DAYS[local.weekday()] not in calendar.days:
        return False
    return calendar.opens <= local.time() < calendar.closes


def policy_for(
    org: Organisation, team_id: str, priority: str, when: datetime
) -> tuple[str, Policy]:
    """The (team, policy) that handles an alert raised at ``when``: in hours the patient's
    team; out of hours its out-of-hours policy, else its out-of-hours team's."""
    team = org.teams[team_id]
    policies = team.escalation.get(priority) or team.escalation["red"]
    if is_in_hours(when, org.calendar):
        return team.id, policies.in_hours
    if policies.out_of_hours is not None:
        return team.id, policies.out_of_hours
    if team.out_of_hours:
        ooh = org.teams[team.out_of_hours]
        ooh_policies = ooh.escalation.get(priority) or ooh.escalation["red"]
        return ooh.id, ooh_policies.in_hours
    return team.id, policies.in_hours


@dataclass(frozen=True, slots=True)
class Step:
    step_no: int
    level: int
    due_at: datetime
    notify: tuple[str, ...]


def plan_steps(policy: Policy, raised_at: datetime) -> list[Step]:
    """Every level in order with cumulative delays, the whole ladder ``repeat`` more times."""
    steps: list[Step] = []
    due = raised_at
    for _cycle in range(policy.repeat + 1):
        for level_no, level in enumerate(policy.levels, start=1):
            due += timedelta(seconds=level.after_s)
            steps.append(Step(len(steps) + 1, level_no, due, level.notify))
    return steps


def _on_shift(shift: Shift, when: datetime, calendar: Calendar) -> bool:
    local = when.astimezone(ZoneInfo(calendar.timezone))
    now, day = local.time(), DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    if shift.starts < shift.ends:
        return day in shift.days and shift.starts <= now < shift.ends
    # through midnight: the evening part today, or the morning part of a shift begun yesterday
    return (day in shift.days and now >= shift.starts) or (
        yesterday in shift.days and now < shift.ends
    )


def resolve_targets(
    org: Organisation,
    team_id: str,
    notify: tuple[str, ...],
    when: datetime,
    care_coordinator: str | None = None,
) -> list[Staff]:
    """The people a step notifies. ``role:`` everyone with the role in the team (or, when
    the team has none, its out-of-hours team); ``rota:`` those with the role on duty now
    (everyone with the role when nobody is rostered); ``person:`` that person;
    ``patient:care_coordinator`` the patient's named care coordinator."""
    team = org.teams[team_id]
    everyone = {s.id: s for t in org.teams.values() for s in t.staff}
    found: dict[str, Staff] = {}
    for target in notify:
        kind, _, value = target.partition(":")
        if kind == "person":
            found[value] = everyone[value]
            continue
        if target == "patient:care_coordinator":
            if care_coordinator in everyone:
                found[care_coordinator] = everyone[care_coordinator]
            continue
        ooh = [org.teams[team.out_of_hours]] if team.out_of_hours else []
        for candidate in [team, *ooh]:
            holders = [s for s in candidate.staff if value in s.roles]
            if kind == "rota":
                on_duty = {
                    sh.staff
                    for sh in candidate.rota
                    if sh.role == value and _on_shift(sh, when, org.calendar)
                }
                holders = [s for s in holders if s.id in on_duty] or holders
            if holders:
                found.update((s.id, s) for s in holders)
                break
    return list(found.values())


def working_hours(calendar: Calendar) -> str:
    return (
        f"{', '.join(calendar.days)} {calendar.opens:%H:%M}–{calendar.closes:%H:%M} "
        f"{calendar.timezone}"
    )
