"""``homeward``: one entry point, sub-commands grouped by part (README, Command line).

Errors a person can act on are printed to standard error with a non-zero exit status.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import click
from pydantic import ValidationError as PydanticValidationError

from commands.access_cmd import audit, token
from commands.admissions_cmd import admissions
from commands.alerts_cmd import alerts
from commands.audit_trail import ACTOR_KEY, record_read
from commands.bench_cmd import bench
from commands.common import database, settings_from
from commands.demo_cmd import demo
from commands.late_cmd import late_reviews
from commands.news2_cmd import news2
from commands.outcomes_cmd import outcomes
from commands.output import emit, emit_one
from commands.rules_cmd import rules
from commands.run_cmd import run
from commands.simulate_cmd import simulate
from commands.teams_cmd import teams
from commands.web_cmd import patient_set_password, staff
from homeward.config import Settings, invalid_settings
from homeward.db.connect import connect
from homeward.errors import ConfigurationError, HomewardError


class HomewardGroup(click.Group):
    """Turns our errors into one clear line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HomewardError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=HomewardGroup)
@click.version_option(package_name="homeward")
@click.option(
    "--actor",
    envvar="HOMEWARD_ACTOR",
    default=None,
    help="Who runs the command, for the audit log of patient data read (default: the OS user).",
)
@click.pass_context
def cli(ctx: click.Context, actor: str | None) -> None:
    """Homeward: remote monitoring for integrated community care."""
    ctx.meta[ACTOR_KEY] = actor.strip() if actor and actor.strip() else None
    try:
        settings = Settings()
    except PydanticValidationError as exc:
        raise ConfigurationError(invalid_settings(exc)) from exc
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for chatty in ("yoyo", "apscheduler"):  # a line per migration step, two per timer run
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.root.level))
    ctx.obj = settings


# ---- db ---------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Schema migrations and storage policies."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations, then TimescaleDB policies when the extension is present."""
    from homeward.db.migrate import upgrade
    from homeward.db.policies import apply_policies

    settings = settings_from(ctx)
    with database(ctx) as dsn:
        report = upgrade(dsn)
        policies = apply_policies(
            dsn,
            compress_after_days=settings.compress_after_days,
            retention_days=settings.retention_days,
        )
    click.echo(
        f"migrations applied: {', '.join(report.applied) or 'none'}"
        f" ({report.already} already in place)"
    )
    if policies.timescaledb:
        retention = f"{policies.retention_days} days" if policies.retention_days else "keep all"
        click.echo(
            f"TimescaleDB: compress after {policies.compress_after_days} days, "
            f"retention {retention}"
        )
    else:
        click.echo("TimescaleDB not available: plain PostgreSQL tables and rollup views")


# ---- patients and devices -----------------------------------------------------------------


@cli.group()
def patient() -> None:
    """Patients (NHS numbers are validated with their check digit)."""


@patient.command("add")
@click.option("--nhs-number", required=True, help="Ten digits, spaces allowed.")
@click.option("--name", required=True)
@click.option("--team", default=None, help="Responsible neighbourhood team id.")
@click.option("--condition", "conditions", multiple=True, help="Repeat for several.")
@click.option("--practice", default=None, help="The patient's GP practice.")
@click.option("--coordinator", default=None, help="Named care coordinator (staff id).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def patient_add(
    ctx: click.Context,
    nhs_number: str,
    name: str,
    team: str | None,
    conditions: tuple[str, ...],
    practice: str | None,
    coordinator: str | None,
    as_json: bool,
) -> None:
    """Enrol a patient (idempotent: re-running updates name and team, adds conditions)."""
    from devices.registry import add_patient

    with database(ctx) as dsn, connect(dsn) as conn:
        added = add_patient(
            conn,
            nhs_number=nhs_number,
            name=name,
            team=team,
            conditions=conditions,
            practice=practice,
            care_coordinator=coordinator,
        )
        conn.commit()
    emit_one(dataclasses.asdict(added), as_json=as_json)


@patient.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def patient_list(ctx: click.Context, as_json: bool) -> None:
    """List patients."""
    from devices.registry import list_patients

    with database(ctx) as dsn, connect(dsn) as conn:
        rows = [dataclasses.asdict(p) for p in list_patients(conn)]
        record_read(conn, ctx, "list_patients", patient_ids=[r["patient_id"] for r in rows])
    for row in rows:
        row.pop("created")
    emit(rows, as_json=as_json, title="patients")


@cli.group()
def device() -> None:
    """Devices and their binding to patients."""


@device.command("add")
@click.argument("device_id")
@click.option("--patient", "nhs_number", required=True, help="The patient's NHS number.")
@click.option("--password", default=None, help="Broker password for this device (stored hashed).")
@click.option("--kind", default=None, help="e.g. bp_cuff, scales, pulse_oximeter.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def device_add(
    ctx: click.Context,
    device_id: str,
    nhs_number: str,
    password: str | None,
    kind: str | None,
    as_json: bool,
) -> None:
    """Register DEVICE_ID and bind it to a patient from now on."""
    from devices.registry import add_device

    with database(ctx) as dsn, connect(dsn) as conn:
        binding = add_device(
            conn, device_id, patient_nhs_number=nhs_number, password=password, kind=kind
        )
        conn.commit()
    emit_one(dataclasses.asdict(binding), as_json=as_json)


@device.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def device_list(ctx: click.Context, as_json: bool) -> None:
    """List devices with the patient each is bound to now."""
    from devices.registry import list_devices

    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_devices(conn)
        record_read(conn, ctx, "list_devices", nhs_numbers=[r["nhs_number"] for r in rows])
    emit(rows, as_json=as_json, title="devices")


@device.command("broker-files")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--service-passwords",
    "services_file",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="mosquitto_passwd file with the service accounts (homeward-ingest).",
)
@click.pass_context
def device_broker_files(ctx: click.Context, out_dir: str, services_file: str | None) -> None:
    """Write the broker's dynamic-security file: each device, connecting with its own id
    only, publishes its own readings and status and subscribes to its own config and
    feedback; the service accounts come from --service-passwords, never the registry."""
    import json
    from pathlib import Path

    from devices.credentials import broker_security, is_reserved_name
    from devices.registry import device_credentials

    settings = settings_from(ctx)
    with database(ctx) as dsn, connect(dsn) as conn:
        creds = device_credentials(conn)
    devices = [(d, h) for d, h in creds if not is_reserved_name(d)]
    for device_id in sorted({d for d, _h in creds} - {d for d, _h in devices}):
        click.echo(f"skipped device {device_id}: a reserved name, no password written", err=True)
    services: list[tuple[str, str]] = []
    if services_file is not None:
        for line in Path(services_file).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                user, _, hashed = line.partition(":")
                services.append((user, hashed))
    else:
        click.echo("no --service-passwords: the ingest service cannot connect", err=True)
    try:
        security = broker_security(
            settings.topic_root, settings.mqtt_share_group, devices, services
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "dynamic-security.json"
    target.touch(mode=0o600)
    target.chmod(0o600)
    target.write_text(json.dumps(security, indent=1) + "\n")
    click.echo(f"wrote {target} ({len(devices)} devices, {len(services)} service accounts)")


# ---- quarantine ---------------------------------------------------------------------------


@cli.group()
def quarantine() -> None:
    """Rejected messages, kept with the reason."""


@quarantine.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--reason", default=None, help="Filter by reason code (see docs/payload.md).")
@click.option("--device", "device_id", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(
    ctx: click.Context, limit: int, reason: str | None, device_id: str | None, as_json: bool
) -> None:
    """Show quarantined messages, newest first."""
    from devices.registry import list_quarantine

    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_quarantine(conn, limit=limit, reason=reason, device_id=device_id)
        devices = sorted({r["device_id"] for r in rows if r["device_id"]})
        bound = conn.execute(  # whose device sent each (the payloads hold their readings)
            "SELECT DISTINCT patient_id FROM device_bindings WHERE device_id = ANY(%s)",
            (devices,),
        ).fetchall()
        record_read(
            conn,
            ctx,
            "list_quarantine",
            patient_ids=[int(str(b[0])) for b in bound],
            detail={"quarantine": [r["quarantine_id"] for r in rows], "devices": devices},
        )
    if not as_json:
        keep = (
            "quarantine_id",
            "last_received_at",
            "times_seen",
            "device_id",
            "msg_id",
            "reason",
            "detail",
        )
        rows = [{key: row[key] for key in keep} for row in rows]
    emit(rows, as_json=as_json, title="quarantined messages")


# Commands that live in their own modules.
cli.add_command(run)
cli.add_command(bench)
cli.add_command(demo)
cli.add_command(simulate)
cli.add_command(news2)
cli.add_command(rules)
cli.add_command(alerts)
cli.add_command(teams)
cli.add_command(token)
cli.add_command(audit)
cli.add_command(admissions)
cli.add_command(late_reviews)
cli.add_command(staff)
patient.add_command(patient_set_password)
cli.add_command(outcomes)


if __name__ == "__main__":
    cli()
