"""The benchmark table, with each target and a plain verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

# key, label, target, direction ("min": at least, "max": at most)
TARGETS: list[tuple[str, str, float | None, str]] = [
    ("drain_readings_per_s", "drain, readings/s", None, "min"),
    ("drain_warm_s", "  start-up: patients loaded before subscribing, s", None, "max"),
    ("noop_readings_per_s", "  ref: no-op subscriber, readings/s", None, "min"),
    ("naive_readings_per_s", "  ref: naive INSERT per message, readings/s", None, "min"),
    ("copy_readings_per_s", "  ref: COPY alone, readings/s", None, "min"),
    ("drain_ratio_noop", "drain ÷ no-op subscriber", 0.5, "min"),
    ("drain_ratio_naive", "drain ÷ naive consumer", 5.0, "min"),
    ("latency_commit_p50_ms", "publish → committed p50, ms", None, "max"),
    ("latency_commit_p99_ms", "publish → committed p99, ms", 60.0, "max"),
    ("latency_commit_max_ms", "publish → committed max, ms", None, "max"),
    ("latency_alert_table_p99_ms", "publish → alert in the alerts table p99, ms", None, "max"),
    ("latency_alert_p99_ms", "publish → alert on the team's stream p99, ms", 150.0, "max"),
    ("rule_us_per_reading", "rule cost, µs/reading", 20.0, "max"),
    ("rss_mb_per_10k_patients", "RSS per 10,000 patients, MB", 300.0, "max"),
    ("api_queue_p50_ms", "API team queue p50, ms", None, "max"),
    ("api_queue_p99_ms", "API team queue p99, ms", 50.0, "max"),
    ("api_patient_7d_p50_ms", "API patient 7 days raw p50, ms", None, "max"),
    ("api_patient_7d_p99_ms", "API patient 7 days raw p99, ms", 50.0, "max"),
    ("api_patient_7d_hourly_p99_ms", "API patient 7 days hourly p99, ms", 50.0, "max"),
    ("api_ref_sql_7d_p99_ms", "  ref: the 7-day query straight to PostgreSQL p99, ms", None, "max"),
    ("api_fhir_7d_p99_ms", "FHIR Observation search, 7 days, p99, ms", None, "max"),
    ("api_fhir_ratio_raw", "FHIR 7 days ÷ API 7 days raw, p99", 2.0, "max"),
    ("scale_out_ratio", "two workers ÷ one worker", None, "min"),
    (
        "scale_down_sigterm_delay_max_s",
        "one of two workers stopped (SIGTERM): max delay, s",
        None,
        "max",
    ),
    (
        "scale_down_sigkill_delay_max_s",
        "one of two workers killed (SIGKILL): max delay, s",
        None,
        "max",
    ),
    ("bytes_per_reading", "bytes per reading", None, "max"),
    ("bytes_per_reading_compressed", "bytes per reading, compressed", 10.0, "max"),
]


def verdict(value: float | None, target: float | None, direction: str) -> str:
    if value is None:
        return "not measured yet"
    if target is None:
        return ""
    met = value >= target if direction == "min" else value <= target
    return "met" if met else "MISSED"


def print_report(result: dict[str, Any], console: Console) -> None:
    table = Table(title="Homeward benchmark (median of repetitions, [min – max])")
    for column in ("figure", "median", "range", "target", "verdict"):
        table.add_column(column)
    for key, label, target, direction in TARGETS:
        value = result.get(key)
        low, high = result.get(f"{key}_min"), result.get(f"{key}_max")
        shown = "—" if value is None else f"{value:,.2f}"
        spread = "" if low is None else f"{low:,.2f} – {high:,.2f}"
        goal = "" if target is None else ("≥ " if direction == "min" else "≤ ") + f"{target:g}"
        table.add_row(label, shown, spread, goal, verdict(value, target, direction))
    console.print(table)
    console.print(
        f"lost: {result['lost']}, duplicated: {result['duplicated']} "
        f"(checked by counting rows, and duplicate open alerts, after every drain)"
    )
    scale = result.get("scale_out")
    if scale:
        drains = ", ".join(
            f"{s['workers']} worker{'s' if s['workers'] > 1 else ''} "
            f"{s['readings_per_s']:,.0f} readings/s"
            for s in scale
        )
        alerts = result.get("scale_out_alerts", {})
        console.print(
            f"scale-out drains: {drains}; alerts of one worker {alerts.get('alerts', '?')},"
            f" missing with two {alerts.get('missing_alerts', '?')},"
            f" extra with two {alerts.get('extra_alerts', '?')}"
        )
