"""What every command shares: the settings object and the database it talks to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from homeward.config import Settings
from tools.embedded.services import services


def settings_from(ctx: click.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


@contextlib.contextmanager
def database(ctx: click.Context) -> Iterator[str]:
    """The configured database URL, or the embedded one (started for this command)."""
    with services(settings_from(ctx), broker=False) as svc:
        yield svc.settings.dsn
