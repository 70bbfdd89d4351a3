"""Query parameters of the HTTP API, validated at the edge (pydantic): bounded page sizes
and time ranges, known metrics only, times with an offset. A bad parameter is a 400 that
names it; nothing is guessed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

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
                data[key] = [m for v in values for m in v.split(",") if m]
            elif len(values) > 1:
                data[key] = values  # fails validation with a clear message
            else:
                data[key] = values[0]
        return cls.model_validate(data)


class ReadingsQuery(_Params):
    since: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = Field(default=None, alias="to")
    metric: list[str] | None = None
    resolution: Resolution = Resolution.RAW
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 5_000

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


class QueueQuery(_Params):
    team: str | None = Field(default=None, min_length=1, max_length=80)
    state: AlertState | None = None
    # The first page a nurse works from, red first; more on request (docs/api.md).
    limit: Annotated[int, Field(ge=1, le=500)] = 50

    @model_validator(mode="after")
    def _unresolved_only(self) -> QueueQuery:
        if self.state is AlertState.RESOLVED:
            raise ValueError("the queue holds unresolved alerts: state is open or acknowledged")
        return self


class PatientAlertsQuery(_Params):
    state: AlertState | None = None
    limit: Annotated[int, Field(ge=1, le=1_000)] = 200
