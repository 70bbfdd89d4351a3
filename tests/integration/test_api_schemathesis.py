"""The OpenAPI document and the server agree: schemathesis (the OpenAPI fuzzer) runs
every check it has — server errors, status codes, content types, response schemas,
headers, negative data rejected, positive data accepted, missing auth, unsupported
methods — against the live API as a nurse and as a patient (issue 12, item 12).

The run is short and deterministic: derandomised generation (no seed, no example
database), a bounded number of examples per operation, one worker. The NHS number and
the alert id in the paths are the seeded patient's and alert's (a valid check digit, an
alert that exists, is what JSON Schema cannot say; a late review is seeded for its
close); everything else is generated from the document. Three rules span several inputs
and so cannot be written in JSON Schema: a readings window (``from`` before ``to``, at
most the resolution's longest span), an outcomes period (likewise, at most 400 days) and
a snooze's limit by the alert's priority (red: one hour). For those operations a 400 is
accepted for schema-valid data (and for the outcomes report, which a patient may not
read, a 403); the rules themselves are tested one by one
(test_api.py::test_bad_parameters_are_a_clear_400, ::test_a_bad_action_is_a_clear_400…)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from api_support import DEAL_NHS, Api, alert_id, api, clock, seeded

__all__ = ["api", "clock", "seeded"]

CROSS_FIELD_RULES = {
    "/api/v1/patients/{nhs_number}/readings": ("2xx", "400", "404", "409"),
    "/api/v1/alerts/{alert_id}/snooze": ("2xx", "400", "404", "409"),
    # ``to`` not before ``from``, at most 400 days; a patient is refused the report
    "/api/v1/outcomes": ("2xx", "400", "403"),
}
EXAMPLES = 25  # per operation and phase: the run stays well under a minute


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is a dev dependency: pip install -e '.[dev]'")
    return found


@pytest.mark.parametrize("who", ["deal.mn1", "patient"])
async def test_schemathesis_finds_nothing_with_every_check_on(
    api: Api, db_url: str, seeded: dict[str, Any], tmp_path: Path, who: str
) -> None:
    config = tmp_path / "schemathesis.toml"
    amber = alert_id(db_url, seeded["deal"], "amber")
    with psycopg.connect(db_url) as conn:  # a late reading waiting for review
        (review,) = conn.execute(
            "INSERT INTO late_reviews (patient_id, rule_id, measured_at, received_at, value,"
            " message) VALUES (%s, 'trend:body_weight:gain', now() - interval '8 days', now(),"
            " 83.5, 'late: weight gain') RETURNING review_id",
            (seeded["deal"],),
        ).fetchone() or (None,)
    config.write_text(
        "[parameters]\n"
        f'"path.nhs_number" = "{DEAL_NHS}"\n'
        f'"path.alert_id" = {amber}\n'
        f'"path.review_id" = {review}\n'
        + "".join(
            f'\n[[operations]]\ninclude-path = "{path}"\n'
            "[operations.checks.positive_data_acceptance]\n"
            f"expected-statuses = {json.dumps(list(statuses))}\n"
            for path, statuses in CROSS_FIELD_RULES.items()
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    process = await asyncio.create_subprocess_exec(
        _schemathesis(),
        "--config-file",
        str(config),
        "run",
        f"{api.base}openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {api.tokens[who]}",
        "--seed",
        "20261202",
        "--generation-deterministic",
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-color",
        "--request-timeout",
        "30",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    output, _ = await process.communicate()  # the API answers in this event loop meanwhile
    text = output.decode("utf-8", "replace")
    assert process.returncode == 0, text
    assert "No issues found" in text or "passed" in text, text
