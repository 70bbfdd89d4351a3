"""Printing for commands: a readable table by default, JSON with ``--json``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

console = Console()


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise TypeError


def emit(rows: Sequence[dict[str, Any]], *, as_json: bool, title: str | None = None) -> None:
    if as_json:
        click.echo(orjson.dumps(list(rows), default=_default, option=orjson.OPT_INDENT_2))
        return
    if not rows:
        console.print(f"[dim]no {title or 'rows'}[/dim]")
        return
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(_plain(v if not isinstance(v, bytes) else _default(v)) for v in row.values())
        )
    console.print(table)


def emit_one(row: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(row, default=_default, option=orjson.OPT_INDENT_2))
    else:
        for key, value in row.items():
            console.print(f"[bold]{key}[/bold]: {_plain(value)}")
