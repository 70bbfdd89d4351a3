"""Reloading the organisation file with tokens issued: the staff it still names keep their
tokens, a person it no longer names loses theirs at once (the reload had failed on the
tokens' foreign key once any staff token existed)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from alerts import escalation_store
from alerts.teams import load_org_file
from api.access import token_digest
from api.tokens import issue_token
from api.views import Q

EXAMPLE = (Path(__file__).parents[2] / "deploy" / "teams.example.yaml").read_text()
LEAVER = """    - id: deal.sw1
      name: Hal Dummyshire (fictional)
      roles:
      - social_worker
      email: deal.sw1@example.invalid
"""


def speaks_for(conn: psycopg.Connection[tuple[object, ...]], token: str) -> object:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            Q["principal"], {"digest": token_digest(token), "now": datetime.now(UTC)}
        ).fetchone()
    return None if row is None else row["subject"]


def test_a_reload_keeps_the_tokens_of_staff_it_names_and_ends_a_leavers(db_url: str) -> None:
    assert LEAVER in EXAMPLE
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        escalation_store.load_organisation(conn, load_org_file(EXAMPLE), EXAMPLE)
        _, stays = issue_token(conn, now=now, staff_id="deal.mn1")
        _, leaves = issue_token(conn, now=now, staff_id="deal.sw1")
        changed = EXAMPLE.replace(LEAVER, "")
        version = escalation_store.load_organisation(conn, load_org_file(changed), changed)
        assert version is not None
        assert speaks_for(conn, stays) == "deal.mn1"
        assert speaks_for(conn, leaves) is None
        assert conn.execute("SELECT 1 FROM staff WHERE staff_id = 'deal.sw1'").fetchone() is None
