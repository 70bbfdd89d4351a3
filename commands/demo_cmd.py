"""``homeward demo``: the whole pipeline on embedded services with a simulated fleet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

from alerts.escalation_store import load_organisation
from alerts.teams import load_org_file
from api.tokens import issue_token
from devices.registry import add_device, add_patient
from homeward.config import Settings
from homeward.db.migrate import upgrade
from homeward.db.policies import apply_policies
from service.wiring import HomewardService
from tools.embedded.mosquitto import free_port
from tools.embedded.services import services
from tools.simulator.fleet import SimPatient, Simulator, generate_fleet
from tools.simulator.publisher import FleetPublisher


@dataclass(frozen=True, slots=True)
class DemoOptions:
    patients: int
    day_s: float
    wearables: bool
    bad_rate: float
    seed: int


# The demo's fictional practices and teams; every simulated patient belongs to one.
EXAMPLE_ORG = Path(__file__).resolve().parents[1] / "deploy" / "teams.example.yaml"


def register(dsn: str, fleet: list[SimPatient]) -> None:
    with psycopg.connect(dsn) as conn:
        text = EXAMPLE_ORG.read_text(encoding="utf-8")
        load_organisation(conn, load_org_file(text), text)
        for p in fleet:
            add_patient(
                conn,
                nhs_number=p.nhs_number,
                name=p.name,
                team=p.team,
                conditions=p.conditions,
                care_coordinator=f"{p.team}.cc1",
            )
            for device in p.devices:
                add_device(
                    conn, device.device_id, patient_nhs_number=p.nhs_number, kind=device.kind
                )
        conn.commit()


def demo_api_access(dsn: str, patient: SimPatient, base: str) -> str:
    """Tokens for one monitoring nurse and one patient of the demo, valid for a day, and
    the commands that use them (tokens: docs/api.md)."""
    now = datetime.now(UTC)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT staff_id FROM staff WHERE team_id = %s AND 'monitoring_nurse' = ANY(roles)"
            " ORDER BY staff_id LIMIT 1",
            (patient.team,),
        ).fetchone()
        if row is None:
            return ""
        _, nurse = issue_token(conn, now=now, staff_id=row[0], days=1, label="demo")
        _, own = issue_token(conn, now=now, nhs_number=patient.nhs_number, days=1, label="demo")
    return (
        f"  API, as nurse {row[0]}:\n"
        f"    curl -H 'Authorization: Bearer {nurse}' {base}/api/v1/queue\n"
        f"  API, as patient {patient.nhs_number} (their last 7 days):\n"
        f"    curl -H 'Authorization: Bearer {own}' "
        f"{base}/api/v1/patients/{patient.nhs_number}/readings\n"
    )


def demo_web_access(dsn: str, patient: SimPatient, web: str, mqtt_url: str, state_dir: Path) -> str:
    """Sign-ins for the web app — the patient's monitoring nurse, a GP of their team and
    the patient — with passwords fresh for this run (older sessions end), printed and
    written to ``<state dir>/demo.json`` for scripts, with a device of the patient's."""
    from web.store import set_password

    now = datetime.now(UTC)
    users: dict[str, dict[str, str]] = {}
    with psycopg.connect(dsn) as conn:
        for key, role in (("nurse", "monitoring_nurse"), ("clinician", "gp")):
            row = conn.execute(
                "SELECT staff_id FROM staff WHERE team_id = %s AND %s = ANY(roles)"
                " ORDER BY staff_id LIMIT 1",
                (patient.team, role),
            ).fetchone()
            if row is not None:
                users[key] = {"username": row[0], "password": secrets.token_urlsafe(12)}
        users["patient"] = {"username": patient.nhs_number, "password": secrets.token_urlsafe(12)}
        for key, user in users.items():
            if key == "patient":
                set_password(conn, now=now, password=user["password"], nhs_number=user["username"])
            else:
                set_password(conn, now=now, password=user["password"], staff_id=user["username"])
    doc = {
        "web": web,
        "mqtt": mqtt_url,  # the demo's broker takes devices without credentials
        "users": users,
        "example_device": patient.devices[0].device_id if patient.devices else None,
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / "demo.json"
    target.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    target.chmod(0o600)  # passwords inside
    lines = [f"  web app:     {web}/  (sign-ins also in {target})"]
    for key, user in users.items():
        lines.append(f"    {key:<10} user {user['username']:<16} password {user['password']}")
    return "\n".join(lines) + "\n"


def counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM quarantine),"
            " (SELECT count(*) FROM alerts WHERE state <> 'resolved')"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def simulate(
    settings: Settings,
    fleet: list[SimPatient],
    options: DemoOptions,
    first_run: bool,
    stop: threading.Event,
) -> None:
    """The fleet's devices, in a thread (paho's client is synchronous)."""
    sim = Simulator(
        fleet,
        start=datetime.now(UTC),
        day_s=options.day_s,
        bad_rate=options.bad_rate,
        seed=options.seed,
    )
    with FleetPublisher(settings) as publisher:
        for patient in fleet:
            for device in patient.devices:
                publisher.publish_status(device.device_id, "online")
        if first_run:
            for message in sim.history(datetime.now(UTC)):
                publisher.publish(message)
        next_round = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_round:
                for message in sim.spot_round(datetime.now(UTC)):
                    publisher.publish(message)
                next_round = now + options.day_s
            if options.wearables:
                for message in sim.wearable_tick(datetime.now(UTC)):
                    publisher.publish(message)
            publisher.flush()
            stop.wait(1.0)


async def run_demo(settings: Settings, options: DemoOptions) -> None:
    dsn = settings.dsn
    fleet = generate_fleet(options.patients, seed=options.seed, wearables=options.wearables)
    register(dsn, fleet)
    first_run = counts(dsn)[0] == 0
    service = HomewardService(settings, own_process=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    service_task = asyncio.create_task(service.run(stop, ready=ready), name="service")
    await ready.wait()
    base = f"http://{settings.http_host}:{service.http_port}"
    api = demo_api_access(dsn, fleet[0], base)
    web = demo_web_access(dsn, fleet[0], base, settings.mqtt_url or "", settings.state_dir)
    click.echo(
        f"\nHomeward demo is running ({options.patients} patients, a simulated day every "
        f"{options.day_s:.0f} s, {'' if first_run else 'resumed, '}Ctrl-C to stop).\n"
        f"  health:      http://{settings.http_host}:{service.http_port}/health\n"
        f"  database:    psql {dsn}\n"
        f"  broker:      {settings.mqtt_url}  (topics {settings.topic_root}/devices/+/readings)\n"
        f"  quarantine:  .venv/bin/homeward quarantine list\n"
        f"  patients:    .venv/bin/homeward patient list\n"
        f"  alerts:      .venv/bin/homeward alerts list   (then: alerts ack ID --by deal.mn1)\n"
        f"{web}{api}"
    )
    sim_stop = threading.Event()
    sim_task = asyncio.create_task(
        asyncio.to_thread(simulate, settings, fleet, options, first_run, sim_stop), name="sim"
    )
    try:
        while not stop.is_set():
            if service_task.done() or sim_task.done():
                break
            readings, quarantined, alerts = await asyncio.to_thread(counts, dsn)
            click.echo(
                f"{datetime.now().strftime('%H:%M:%S')}  readings stored {readings:>8}  "
                f"quarantined {quarantined:>5}  open alerts {alerts:>4}"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=5)
    finally:
        click.echo("stopping: simulator, then ingest (stores and acknowledges what it holds) …")
        sim_stop.set()
        await sim_task
        stop.set()
        await service_task
    click.echo("stopped; run `make demo` again to resume with the data kept.")


@click.command("demo")
@click.option("--patients", default=40, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--day-seconds",
    "day_s",
    default=60.0,
    show_default=True,
    help="Length of a simulated day (spot readings once per day).",
)
@click.option("--wearables/--no-wearables", default=False, help="Add 1 Hz wearables.")
@click.option("--bad-rate", default=0.01, show_default=True, help="Share of bad payloads.")
@click.option("--seed", default=1, show_default=True)
def demo(patients: int, day_s: float, wearables: bool, bad_rate: float, seed: int) -> None:
    """Start embedded PostgreSQL and Mosquitto (unless configured), migrate, register a
    simulated fleet and run the service with it until Ctrl-C."""
    settings = Settings()
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the sink's every connection
    outbox = None
    if settings.smtp_url is None:  # a local mail sink, so e-mail escalations are delivered
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        outbox = Controller(
            Mailbox(settings.state_dir.resolve() / "outbox"), hostname="127.0.0.1", port=free_port()
        )
        outbox.start()
        settings = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{outbox.port}"})
        click.echo(f"e-mail escalations go to {settings.state_dir / 'outbox'} (a Maildir)")
    try:
        with services(settings) as svc:
            upgrade(svc.settings.dsn)
            apply_policies(
                svc.settings.dsn,
                compress_after_days=settings.compress_after_days,
                retention_days=settings.retention_days,
            )
            options = DemoOptions(patients, day_s, wearables, bad_rate, seed)
            asyncio.run(run_demo(svc.settings, options))
    finally:
        if outbox is not None:
            outbox.stop()
