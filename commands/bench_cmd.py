"""``homeward bench``: throughput, latency and storage against the machine's own limits."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from rich.console import Console

from homeward.config import Settings


@click.command("bench")
@click.option("--quick", is_flag=True, help="A reduced run (under two minutes), same keys.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write results here.")
@click.option("--messages", type=int, default=None, help="Messages in the drain queue.")
@click.option("--repetitions", type=click.IntRange(1, 20), default=None)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a pyinstrument profile of the first Homeward drain here.",
)
def bench(
    quick: bool,
    json_path: str | None,
    messages: int | None,
    repetitions: int | None,
    profile_path: Path | None,
) -> None:
    """Run the benchmark against a private Mosquitto and the configured (or embedded)
    PostgreSQL; print a table and optionally write JSON."""
    from dataclasses import replace

    from tools.bench.report import print_report
    from tools.bench.run import BenchParams, run_benchmark

    params = BenchParams.quick() if quick else BenchParams()
    if messages is not None:
        params = replace(params, messages=messages)
    if repetitions is not None:
        params = replace(params, repetitions=repetitions)
    if profile_path is not None:
        params = replace(params, profile=profile_path)
    result = run_benchmark(Settings(), params)
    print_report(result, Console())
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        click.echo(f"wrote {json_path}")
