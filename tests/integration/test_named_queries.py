"""Every named query of every part is valid against the migrated schema.

Each ``-- name:`` block of each part's ``.sql`` file is prepared (PostgreSQL parses,
resolves every table, column and function, and infers parameter types) in a database
migrated like production. A renamed column or a typo fails here, not at 3 a.m.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from homeward.db.queries import load_queries

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("devices", "ingest", "alerts", "api", "web")
SQL_FILES = sorted(p for part in PARTS for p in (ROOT / part).rglob("*.sql"))
PLACEHOLDER = re.compile(r"%\((?P<name>[a-z_][a-z0-9_]*)\)s")

# Statements that create what later ones use: the writer's staging table lives per session.
SETUP = {"ingest/writer.sql": ("create_incoming",)}
# Blocks with a ``{slot}`` are composed by their module with psycopg.sql; each slot gets
# every form the code gives it (api/views.py).
SLOTS = {
    "teams": ("a.team_id = %(team_id)s", "a.team_id = ANY(%(teams)s::text[])"),
    "rollup": ("readings_hourly", "readings_daily"),
    "beyond": (">", "<"),  # api/fhir/handlers.py: the keyset, ascending or descending
    "direction": ("ASC", "DESC"),
}
SLOT = re.compile(r"\{(?P<slot>[a-z_]+)\}")


def _positional(query: str) -> str:
    """psycopg's ``%(name)s`` → PostgreSQL's ``$n`` (one number per distinct name)."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match['name'], len(numbers) + 1)}"

    return PLACEHOLDER.sub(number, query).replace("%%", "%")


CASES = [(path, name) for path in SQL_FILES for name in load_queries(path)]


def _forms(text: str) -> list[str]:
    """The statement as the code runs it: every composition of its slots."""
    slots = sorted(set(SLOT.findall(text)))
    forms = [text]
    for slot in slots:
        forms = [f.replace("{" + slot + "}", value) for f in forms for value in SLOTS[slot]]
    return forms


def _problem(conn: psycopg.Connection[tuple[object, ...]], text: str) -> str:
    if text.lstrip().upper().startswith(("CREATE", "LISTEN", "NOTIFY")):
        conn.execute(text)  # utility statements cannot be prepared
        return ""
    if text.lstrip().upper().startswith("COPY"):
        # COPY cannot be prepared; selecting its target columns checks table and columns.
        columns = re.search(r"COPY\s+(\w+)\s*\(([^)]*)\)", text, re.IGNORECASE)
        assert columns, text
        conn.execute(f"SELECT {columns[2]} FROM {columns[1]} LIMIT 0")
        return ""
    result = conn.pgconn.prepare(b"", _positional(text).encode())
    return result.error_message.decode()


def test_every_part_has_named_queries() -> None:
    assert len(SQL_FILES) >= 9
    assert len(CASES) >= 60


def test_every_named_query_prepares_against_the_schema(db_url: str) -> None:
    problems = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        for path in SQL_FILES:
            queries = load_queries(path)
            for setup in SETUP.get(str(path.relative_to(ROOT)), ()):
                conn.execute(queries[setup])
            for name, text in queries.items():
                if name in SETUP.get(str(path.relative_to(ROOT)), ()):
                    continue
                for form in _forms(text):
                    if problem := _problem(conn, form):
                        problems.append(f"{path.relative_to(ROOT)}:{name}: {problem}")
    assert not problems, "\n".join(problems)
