"""``homeward simulate``: the fleet simulator against the configured broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from homeward.config import Settings
from tools.simulator.fleet import Simulator, generate_fleet
from tools.simulator.publisher import FleetPublisher


@click.command("simulate")
@click.option("--patients", default=40, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--day-seconds", "day_s", default=60.0, show_default=True)
@click.option("--duration", "duration_s", default=None, type=float, help="Stop after S seconds.")
@click.option("--wearables/--no-wearables", default=False)
@click.option("--bad-rate", default=0.005, show_default=True)
@click.option("--seed", default=1, show_default=True)
def simulate(
    patients: int,
    day_s: float,
    duration_s: float | None,
    wearables: bool,
    bad_rate: float,
    seed: int,
) -> None:
    """Publish a simulated fleet's readings to HOMEWARD_MQTT_URL.

    The devices must be registered for the readings to be stored (otherwise they are
    quarantined as unknown devices): `homeward demo` does both.
    """
    settings = Settings()
    fleet = generate_fleet(patients, seed=seed, wearables=wearables)
    sim = Simulator(fleet, start=datetime.now(UTC), day_s=day_s, bad_rate=bad_rate, seed=seed)
    began = time.monotonic()
    next_round = began
    with FleetPublisher(settings) as publisher:
        while duration_s is None or time.monotonic() - began < duration_s:
            now = time.monotonic()
            if now >= next_round:
                for message in sim.spot_round(datetime.now(UTC)):
                    publisher.publish(message)
                next_round = now + day_s
            if wearables:
                for message in sim.wearable_tick(datetime.now(UTC)):
                    publisher.publish(message)
            publisher.flush()
            stats = publisher.stats
            click.echo(
                f"\rpublished {stats.published} messages ({stats.readings} readings, "
                f"{stats.bad} bad on purpose)",
                nl=False,
            )
            time.sleep(1.0)
    click.echo()
