"""``homeward news2``: the NEWS2 calculator (JSON lines in, JSON lines out)."""

from __future__ import annotations

import sys

import click
import orjson

from alerts.news2 import parse_calculator_line, score_news2, score_to_json
from homeward.errors import ValidationError


@click.command("news2")
def news2() -> None:
    """Read one JSON object per line on standard input (respiratory_rate, spo2, spo2_scale,
    on_oxygen, systolic_bp, heart_rate, consciousness, body_temperature — any may be
    missing) and print its NEWS2 as one JSON object per line. The same function scores
    live data. A bad line is reported on standard error with its number and the next
    lines are still scored; the exit status is then 1."""
    stdin = sys.stdin.buffer  # bytes: orjson reports bad UTF-8 as an error on that line
    failed = False
    for number, line in enumerate(stdin, start=1):
        if not line.strip():
            continue
        try:
            result = score_news2(parse_calculator_line(orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            click.echo(f"line {number}: not valid JSON: {exc.msg} (column {exc.colno})", err=True)
            failed = True
            continue
        except ValidationError as exc:
            click.echo(f"line {number}: {exc}", err=True)
            failed = True
            continue
        click.echo(orjson.dumps(score_to_json(result)).decode())
    if failed:
        raise SystemExit(1)
