"""One root exception for the project; every error a person may see derives from it."""

from __future__ import annotations


class HomewardError(Exception):
    """Root of every error Homeward raises on purpose."""

    exit_code = 2  # the command line's exit status for it (docs/operations.md)


class ConfigurationError(HomewardError):
    """Settings are missing or inconsistent."""


class ValidationError(HomewardError):
    """Input (a payload, a command argument, a rule configuration) is not acceptable."""


class InvalidNhsNumber(ValidationError):
    """An NHS number is malformed or fails its modulus-11 check digit."""


class UnitError(ValidationError):
    """A unit is unknown for a metric; it is rejected, never guessed."""


class NotFound(HomewardError):
    """A patient, device or alert that was asked for does not exist."""


class Conflict(HomewardError):
    """The request contradicts stored state (a duplicate, an overlapping binding...)."""


class DatabaseUnavailable(HomewardError):
    """PostgreSQL could not be reached or refused the connection."""


class EmbeddedServiceError(HomewardError):
    """An embedded PostgreSQL or MQTT broker could not be started or stopped."""
