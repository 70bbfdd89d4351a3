"""FHIR search parameters, parsed strictly and purely (no I/O).

Only what docs/fhir.md and the CapabilityStatement list is understood; any other
parameter, a repeated one that cannot repeat, a malformed date or an unknown code is a
400 OperationOutcome that names it — a search is never silently widened.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from api.fhir.codes import CODES, code_for_token
from homeward.errors import InvalidNhsNumber, ValidationError
from homeward.nhs import FHIR_SYSTEM as NHS_NUMBER_SYSTEM
from homeward.nhs import normalise_nhs_number

DEFAULT_COUNT = 100
MAX_COUNT = 1_000
MAX_LASTN = 10
# PostgreSQL's timestamptz covers more, Python's datetime less: searches stay inside both.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_DATE = re.compile(r"^(?P<prefix>eq|ge|gt|le|lt)?(?P<value>\d{4}(-\d{2}(-\d{2})?)?)$")
_DATETIME = re.compile(
    r"^(?P<prefix>eq|ge|gt|le|lt)?"
    r"(?P<value>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2}))$"
)


class Query(Protocol):
    """What is read of a request's query (aiohttp's MultiDictProxy)."""

    def keys(self) -> Any: ...
    def getall(self, key: str, default: list[str]) -> list[str]: ...


class SearchError(ValidationError):
    """A search the server will not run; ``problems`` name each parameter."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid search: " + "; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: the last entry's sort key."""

    time: datetime
    device_id: str
    msg_id: str
    kind: str

    def encode(self) -> str:
        raw = orjson.dumps([self.time.isoformat(), self.device_id, self.msg_id, self.kind])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            time, device, msg, kind = orjson.loads(raw)
            moment = datetime.fromisoformat(time)
            if moment.tzinfo is None or not all(isinstance(v, str) for v in (device, msg, kind)):
                raise ValueError(token)
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
            raise SearchError(["_cursor: not a cursor this server issued"]) from exc
        return cls(moment, device, msg, kind)


@dataclass(frozen=True, slots=True)
class ObservationSearch:
    nhs_number: str
    kinds: frozenset[str] | None  # None: every kind
    since: datetime  # inclusive
    until: datetime  # exclusive
    count: int = DEFAULT_COUNT
    descending: bool = False
    cursor: Cursor | None = None

    @property
    def metrics(self) -> list[str] | None:
        if self.kinds is None:
            return None
        return sorted(m for k in self.kinds for m in CODES[k].metrics)

    def window(self) -> tuple[datetime, datetime]:
        """The time range still to read, narrowed by the cursor (the cursor's own instant
        stays in: entries after it in the sort order may share it)."""
        if self.cursor is None:
            return self.since, self.until
        if self.descending:
            return self.since, min(self.until, self.cursor.time + timedelta(microseconds=1))
        return max(self.since, self.cursor.time), self.until


def _single(query: Query, key: str, problems: list[str]) -> str | None:
    values = query.getall(key, [])
    if len(values) > 1:
        problems.append(f"{key}: given {len(values)} times, allowed once")
        return None
    return values[0] if values else None


def _unknown(query: Query, allowed: set[str], problems: list[str]) -> None:
    for key in sorted(set(query.keys()) - allowed):
        problems.append(f"{key}: not a search parameter this server supports")


def patient_number(value: str | None, problems: list[str], *, required: bool = True) -> str:
    """``patient=9434765919`` or ``patient=Patient/9434765919`` → the NHS number."""
    if value is None:
        if required:
            problems.append("patient: required (Patient/<NHS number> or the NHS number)")
        return ""
    number = value.removeprefix("Patient/")
    try:
        return normalise_nhs_number(number)
    except InvalidNhsNumber as exc:
        problems.append(f"patient: {exc}")
        return ""


def _bound(value: str, problems: list[str]) -> tuple[str, datetime, datetime] | None:
    """A date search value → (prefix, start of the value's range, end of it)."""
    if match := _DATETIME.match(value):
        try:
            moment = datetime.fromisoformat(match["value"].replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"date: {value!r} is not a valid date and time")
            return None
        return match["prefix"] or "eq", moment, moment + timedelta(microseconds=1)
    if match := _DATE.match(value):
        text = match["value"]
        try:
            parts = [int(p) for p in text.split("-")]
            year, month, day = (*parts, 1, 1)[:3]
            start = datetime(year, month, day, tzinfo=UTC)
        except ValueError:
            problems.append(f"date: {value!r} is not a valid date")
            return None
        if len(parts) == 1:
            end = start.replace(year=start.year + 1)
        elif len(parts) == 2:
            end = (start + timedelta(days=32)).replace(day=1)
        else:
            end = start + timedelta(days=1)
        return match["prefix"] or "eq", start, end
    problems.append(
        f"date: {value!r} — use [eq|ge|gt|le|lt] then YYYY, YYYY-MM, YYYY-MM-DD or a "
        "date and time with seconds and an offset"
    )
    return None


def date_window(values: Sequence[str], problems: list[str]) -> tuple[datetime, datetime]:
    since, until = EARLIEST, LATEST
    for value in values:
        bound = _bound(value, problems)
        if bound is None:
            continue
        prefix, start, end = bound
        if not EARLIEST <= start < LATEST:
            problems.append(f"date: {value!r} is outside {EARLIEST.year}–{LATEST.year}")
            continue
        if prefix in ("eq", "ge"):
            since = max(since, start)
        if prefix == "gt":
            since = max(since, end)
        if prefix in ("eq", "le"):
            until = min(until, end)
        if prefix == "lt":
            until = min(until, start)
    return since, until


def _kinds(values: Sequence[str], problems: list[str]) -> frozenset[str] | None:
    tokens = [t for v in values for t in v.split(",")]
    if not values:
        return None
    kinds = set()
    for token in tokens:
        kind = code_for_token(token)
        if kind is None:
            problems.append(
                f"code: {token!r} is not a code Homeward records (LOINC or SNOMED CT of a "
                "vital sign; systolic and diastolic are components of 85354-9)"
            )
        else:
            kinds.add(kind)
    return frozenset(kinds)


def _count(value: str | None, problems: list[str], default: int, most: int, key: str) -> int:
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= most:
        problems.append(f"{key}: a whole number from 1 to {most}")
        return default
    return int(value)


def observation_search(query: Query) -> ObservationSearch:
    problems: list[str] = []
    _unknown(query, {"patient", "subject", "code", "date", "_count", "_sort", "_cursor"}, problems)
    subject = _single(query, "patient", problems) or _single(query, "subject", problems)
    number = patient_number(subject, problems)
    dates = query.getall("date", [])
    if len(dates) > 2:
        problems.append("date: at most twice (a lower and an upper bound)")
    since, until = date_window(dates, problems)
    kinds = _kinds(query.getall("code", []), problems)
    count = _count(_single(query, "_count", problems), problems, DEFAULT_COUNT, MAX_COUNT, "_count")
    sort = _single(query, "_sort", problems) or "date"
    if sort not in ("date", "-date"):
        problems.append("_sort: date or -date")
    token = _single(query, "_cursor", problems)
    cursor = Cursor.decode(token) if token is not None else None
    if problems:
        raise SearchError(problems)
    return ObservationSearch(number, kinds, since, until, count, sort == "-date", cursor)


@dataclass(frozen=True, slots=True)
class LastN:
    nhs_number: str
    kinds: frozenset[str] | None
    most: int

    @property
    def metrics(self) -> list[str] | None:
        if self.kinds is None:
            return None
        return sorted(m for k in self.kinds for m in CODES[k].metrics)


def lastn_search(query: Query) -> LastN:
    problems: list[str] = []
    _unknown(query, {"patient", "subject", "code", "max"}, problems)
    subject = _single(query, "patient", problems) or _single(query, "subject", problems)
    number = patient_number(subject, problems)
    kinds = _kinds(query.getall("code", []), problems)
    most = _count(_single(query, "max", problems), problems, 1, MAX_LASTN, "max")
    if problems:
        raise SearchError(problems)
    return LastN(number, kinds, most)


def patient_of(query: Query) -> str:
    """``Device``/``Flag`` searches: ``patient=`` is required and is all they take."""
    problems: list[str] = []
    _unknown(query, {"patient", "subject"}, problems)
    subject = _single(query, "patient", problems) or _single(query, "subject", problems)
    number = patient_number(subject, problems)
    if problems:
        raise SearchError(problems)
    return number


def patient_identifier(query: Query) -> str:
    """``Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919``."""
    problems: list[str] = []
    _unknown(query, {"identifier"}, problems)
    value = _single(query, "identifier", problems)
    if value is None:
        problems.append(f"identifier: required ({NHS_NUMBER_SYSTEM}|<NHS number>)")
    number = ""
    if value is not None:
        system, sep, code = value.rpartition("|")
        if sep and system != NHS_NUMBER_SYSTEM:
            problems.append(f"identifier: only the system {NHS_NUMBER_SYSTEM} is searched")
        else:
            number = patient_number(code, problems)
    if problems:
        raise SearchError(problems)
    return number


def page_links(
    url: str, pairs: Sequence[tuple[str, str]], next_cursor: Cursor | None
) -> tuple[str, str | None]:
    """This page's link (the request as made) and the next page's: the same search,
    continued from ``next_cursor``."""
    self_url = f"{url}?{urlencode(pairs)}" if pairs else url
    if next_cursor is None:
        return self_url, None
    rest = [(k, v) for k, v in pairs if k != "_cursor"]
    return self_url, f"{url}?{urlencode([*rest, ('_cursor', next_cursor.encode())])}"
