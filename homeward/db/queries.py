"""Named SQL queries kept in ``.sql`` files, loaded once (the procrastinate habit).

A file holds blocks introduced by ``-- name: query_name``; comments after the name line
document the query. Parameters are psycopg named placeholders (``%(name)s``). Each file is
parsed once per process, however many modules read it (``load_queries`` is cached), and
``tests/integration/test_named_queries.py`` prepares every query of every part's file
against the migrated schema, so a renamed column fails a test rather than a night shift.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@functools.cache
def load_queries(path: Path) -> dict[str, LiteralString]:
    """Parse one ``.sql`` file into ``{name: sql}``; duplicate names are an error."""
    text = path.read_text(encoding="utf-8")
    matches = list(_NAME.finditer(text))
    queries: dict[str, LiteralString] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match["name"]
        if name in queries:
            raise ValueError(f"{path.name}: query {name!r} defined twice")
        # The text comes from our own package files, never from input.
        queries[name] = body
    return queries
