"""One typed settings object, read from ``HOMEWARD_*`` environment variables or ``.env``.

Built once in an entry point and passed down; nothing reads the environment elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from homeward.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A broker address parsed from ``mqtt://user:pass@host:port`` or ``mqtts://...``."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigurationError(
                f"MQTT URL must start with mqtt:// or mqtts://, got {parts.scheme or 'none'!r}"
            )
        if not parts.hostname:
            raise ConfigurationError(f"MQTT URL has no host: {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Settings(BaseSettings):
    """Everything an operator can set. Units are in the names."""

    model_config = SettingsConfigDict(
        env_prefix="HOMEWARD_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str | None = Field(
        default=None,
        description="postgresql:// URL; when unset, an embedded PostgreSQL is started.",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="mqtt:// or mqtts:// URL with credentials; when unset, an embedded broker.",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)

    # Ingest
    batch_size: int = Field(default=2000, ge=1, le=100_000, description="messages per batch")
    flush_interval_ms: int = Field(
        default=5, ge=1, le=60_000, description="linger for more messages before a batch"
    )
    receive_maximum: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="MQTT 5 Receive Maximum: unacknowledged messages the broker may send us.",
    )
    mqtt_client_id: str = Field(
        default="homeward-ingest-1",
        pattern=r"^homeward-[A-Za-z0-9._-]{1,120}$",
        description="starts with homeward-: a name no device may take (devices/credentials.py)",
    )
    mqtt_share_group: str = "ingest"
    mqtt_keepalive_s: int = Field(default=15, ge=5, le=3600)
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    mqtt_heartbeat_s: float = Field(
        default=5.0, gt=0, le=300, description="how often a worker records that it runs"
    )
    mqtt_peer_timeout_s: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="a worker silent this long has crashed: a peer reclaims its session",
    )
    topic_root: str = "homeward/v1"
    max_payload_bytes: int = Field(default=16_384, ge=256)
    device_posts_per_minute: int = Field(
        default=120,
        ge=1,
        le=6_000,
        description="readings a device may post over HTTP in any 60 s (a hub's buffer upload)",
    )
    future_tolerance_s: int = Field(default=300, ge=0)
    late_after_s: int = Field(
        default=6 * 3600, ge=60, description="older readings are stored as history, never current"
    )
    db_retry_max_s: float = Field(default=5.0, gt=0)
    statement_timeout_ms: int = Field(default=30_000, ge=100)
    quarantine_keep_bytes: int = Field(
        default=4096,
        ge=0,
        le=1_048_576,
        description="bytes of a rejected payload kept in quarantine (its size and hash always)",
    )
    quarantine_per_minute: int = Field(
        default=60,
        ge=1,
        description="quarantine rows a device may add a minute; the rest are counted, not kept",
    )
    ingest_stall_after_s: float = Field(
        default=30.0,
        gt=0,
        description="/health says degraded when messages have waited this long with no COMMIT",
    )

    adherence_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="how often missed readings and silent devices are checked; 0 turns it off",
    )

    rollup_refresh_s: float = Field(
        default=60.0,
        ge=0,
        description="how often the rollups' dirty buckets are refreshed (TimescaleDB; the"
        " rollups are exact meanwhile, this keeps reading them cheap); 0 turns it off",
    )
    escalation_tick_s: float = Field(
        default=1.0, ge=0, description="how often due escalation steps are fired; 0 turns it off"
    )
    timer_stall_s: float = Field(
        default=60.0,
        gt=0,
        description="a timer run in progress this long, or no run this long after its"
        " interval, makes /health degraded naming the timer",
    )
    smtp_url: str | None = Field(default=None, description="smtp://user:pass@host:port")
    mail_from: str = "homeward@localhost"

    # Web app (docs/web.md)
    web_session_idle_s: int = Field(
        default=30 * 60, ge=60, le=24 * 3600, description="a session ends after this long unused"
    )
    web_session_max_s: int = Field(
        default=12 * 3600, ge=300, le=7 * 24 * 3600, description="and this long after sign-in"
    )
    web_sign_in_failures: int = Field(
        default=5, ge=1, le=100, description="failed sign-ins per user name in the window"
    )
    web_sign_in_window_s: int = Field(default=15 * 60, ge=10, le=24 * 3600)
    web_secure_cookies: bool = Field(
        default=False,
        description="mark cookies Secure even on plain HTTP (behind a TLS-terminating proxy);"
        " over TLS they always are",
    )
    web_assets_dir: Path | None = Field(
        default=None,
        description="nhsuk-frontend's dist/nhsuk (default: node_modules beside the code)",
    )

    # Storage (TimescaleDB, when present)
    compress_after_days: int = Field(default=7, ge=1)
    retention_days: int | None = Field(default=None, ge=1)

    # Embedded services
    state_dir: Path = Path(".homeward")
    embedded_pg_port: int = Field(default=55432, ge=1024, le=65535)
    embedded_mqtt_port: int = Field(default=51883, ge=1024, le=65535)

    # Start and stop (docs/operations.md)
    startup_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="how long start-up waits for the database before it gives up (exit 3)",
    )
    stop_grace_s: float = Field(
        default=20.0,
        ge=2,
        le=600,
        description="SIGTERM to exit at most; what is not stored by then stays in the broker",
    )
    teams_file: Path | None = Field(
        default=None,
        description="an organisation file `homeward run` validates and loads at start-up",
    )
    # Set by systemd for Type=notify services (not a HOMEWARD_ variable): READY=1 is sent
    # once the service serves, STOPPING=1 when it begins to stop.
    notify_socket: str | None = Field(default=None, validation_alias="NOTIFY_SOCKET")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _check_peer_timeout(self) -> Settings:
        if self.mqtt_peer_timeout_s < 2 * self.mqtt_heartbeat_s:
            raise ConfigurationError(
                "HOMEWARD_MQTT_PEER_TIMEOUT_S must be at least twice HOMEWARD_MQTT_HEARTBEAT_S"
                " (a live worker would be taken for a crashed one)"
            )
        return self

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is not None:
            MqttEndpoint.from_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError("HOMEWARD_DATABASE_URL must start with postgresql://")
        return value

    @property
    def mqtt(self) -> MqttEndpoint:
        if self.mqtt_url is None:
            raise ConfigurationError("HOMEWARD_MQTT_URL is not set and no embedded broker runs")
        return MqttEndpoint.from_url(self.mqtt_url)

    @property
    def dsn(self) -> str:
        if self.database_url is None:
            raise ConfigurationError("HOMEWARD_DATABASE_URL is not set and no embedded database")
        return self.database_url

    def readings_topic(self, device_id: str = "+") -> str:
        return f"{self.topic_root}/devices/{device_id}/readings"

    def device_topic(self, device_id: str, leaf: str) -> str:
        return f"{self.topic_root}/devices/{device_id}/{leaf}"

    @property
    def shared_subscription(self) -> str:
        """Ingest's subscription to every device's readings: shared by the workers of
        ``mqtt_share_group``, or, with no group, a plain one — which Mosquitto restores
        with the session after a restart, where it drops a ``$share`` one
        (docs/operations.md)."""
        if not self.mqtt_share_group:
            return self.readings_topic()
        return f"$share/{self.mqtt_share_group}/{self.readings_topic()}"


def setting_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    return alias if isinstance(alias, str) else f"HOMEWARD_{field.upper()}"


def invalid_settings(exc: PydanticValidationError) -> str:
    """One line naming each refused setting and why (URLs, which may hold passwords, are
    named without their value)."""
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        name = setting_name(field) if field else "settings"
        shown = "" if field.endswith("_url") or not field else f"={error.get('input')!r}"
        problems.append(f"{name}{shown}: {error['msg']}")
    return "invalid setting " + "; ".join(problems)
