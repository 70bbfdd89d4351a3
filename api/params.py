"""Query parameters of the HTTP API, validated at the edge (pydantic): bounded page sizes
and time ranges, known metrics only, times in RFC 3339 with an offset, counts in digits
(api/strict.py). A bad parameter is a 400 that names it; nothing is guessed or coerced."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from api.strict import parse_count, parse_time
from homeward.errors import ValidationError
from homeward.metrics import CATALOGUE


class Resolution(StrEnum):
    RAW = "raw"
    HOUR = "hour"
    DAY = "day"


# The longest span one request may ask for, per resolution (a page is at most MAX_LIMIT).
MAX_SPAN = {
    Resolution.RAW: timedelta(days=31),
    Resolution.HOUR: timedelta(days=92),
    Resolution.DAY: timedelta(days=732),
}
DEFAULT_SPAN = timedelta(days=7)
MAX_LIMIT = 10_000


def _time(value: Any) -> Any:
    return parse_time(value) if isinstance(value, str) else value


def _count(value: Any) -> Any:
    return parse_count(value) if isinstance(value, str) else value


# A query-string time: RFC 3339 with an offset only (``from=0`` is not the epoch).
Time = Annotated[
    datetime,
    BeforeValidator(_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
# Query-string counts: digits only (``limit=5e1`` or ``limit=true`` is refused). The
# bounds come before the validator so the document shows them as minimum and maximum.
ReadingsLimit = Annotated[int, Field(ge=1, le=MAX_LIMIT), BeforeValidator(_count)]
QueueLimit = Annotated[int, Field(ge=1, le=500), BeforeValidator(_count)]
AlertsLimit = Annotated[int, Field(ge=1, le=1_000), BeforeValidator(_count)]


# A metric's name: the document lists the catalogue, the server refuses anything else.
Metric = Annotated[
    str, Field(min_length=1), WithJsonSchema({"type": "string", "enum": sorted(CATALOGUE)})
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_query(cls, query: Any) -> Any:
        """Repeated keys are refused (``?limit=1&limit=9`` is ambiguous), except for
        ``metric``, which may be repeated or comma-separated."""
        data: dict[str, Any] = {}
        for key in set(query.keys()):
            values = query.getall(key)
            if key == "metric":
                data[key] = [m for v in values for m in v.split(",")]
            elif len(values) > 1:
                raise ValidationError(f"parameter {key!r} is given {len(values)} times")
            else:
                data[key] = values[0]
        return cls.model_validate(data)


class ReadingsQuery(_Params):
    since: Time | None = Field(default=None, alias="from")
    until: Time | None = Field(default=None, alias="to")
    metric: list[Metric] | None = Field(default=None, min_length=1)
    resolution: Resolution = Resolution.RAW
    limit: ReadingsLimit = 5_000

    @model_validator(mode="after")
    def _known_metrics(self) -> ReadingsQuery:
        for name in self.metric or ():
            if name not in CATALOGUE:
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(CATALOGUE)}")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """``[from, to)`` in UTC: by default the 7 days up to now; at most MAX_SPAN."""
        until = (self.until or now).astimezone(UTC)
        since = (self.since or until - DEFAULT_SPAN).astimezone(UTC)
        if since >= until:
            raise ValidationError("'from' must be before 'to'")
        longest = MAX_SPAN[self.resolution]
        if until - since > longest:
            raise ValidationError(
                f"at most {longest.days} days of {self.resolution.value} readings per request"
            )
        return since, until


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class QueueState(StrEnum):
    """The queue holds unresolved alerts only, so the document offers only these."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"


class QueueQuery(_Params):
    team: str | None = Field(default=None, min_length=1, max_length=80)
    state: QueueState | None = None
    # The first page a nurse works from, red first; more on request (docs/api.md).
    limit: QueueLimit = 50


class PatientAlertsQuery(_Params):
    state: AlertState | None = None
    limit: AlertsLimit = 200


class GroupBy(StrEnum):
    TEAM = "team"
    LOCALITY = "locality"


MAX_OUTCOMES_DAYS = 400  # a year and a little more per request


def _day(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("a date is YYYY-MM-DD")
    return value


# A whole local day (Europe/London): YYYY-MM-DD only.
Day = Annotated[date, BeforeValidator(_day), WithJsonSchema({"type": "string", "format": "date"})]


class OutcomesQuery(_Params):
    first: Day = Field(alias="from")
    last: Day = Field(alias="to")
    by: GroupBy = GroupBy.TEAM

    @model_validator(mode="after")
    def _span(self) -> OutcomesQuery:
        if self.last < self.first:
            raise ValueError("'to' is before 'from'")
        if self.first.year < 1970 or self.last.year > 9998:
            raise ValueError("a period lies between 1970-01-01 and 9998-12-31")
        if (self.last - self.first).days + 1 > MAX_OUTCOMES_DAYS:
            raise ValueError(f"at most {MAX_OUTCOMES_DAYS} days per request")
        return self
