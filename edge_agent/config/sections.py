"""The agent-wide sections of an agent config: identity and place, MQTT connection,
outbox limits, telemetry and logging. One model per concern; devices, rules and
register maps have their own modules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.ids import Id
from protocol.limits import MAX_EVENTS_PER_MESSAGE

__all__ = [
    "AgentSection",
    "LocationConfig",
    "LoggingConfig",
    "ModbusSettings",
    "MqttConfig",
    "OutboxConfig",
    "ReconnectConfig",
    "TelemetryConfig",
    "TlsConfig",
]

Place = Annotated[str, Field(max_length=200)]


class LocationConfig(StrictModel):
    lat: float = Field(ge=-90, le=90, description="latitude, WGS84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude, WGS84 degrees")
    place: Place | None = Field(None, description="where, in words (street, building, flat)")


class AgentSection(StrictModel):
    id: Id = Field(description="agent id; also its MQTT user name and topic level")
    grid_id: Id | None = Field(None, description="the management grid this agent stands in")
    location: LocationConfig
    data_dir: str = Field(
        "data", min_length=1,
        description="directory for the outbox and rule state (relative to this file)",
    )


class TlsConfig(StrictModel):
    ca_file: str | None = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: str | None = Field(None, description="client certificate (mutual TLS), optional")
    key_file: str | None = Field(None, description="client key (mutual TLS), optional")
    insecure_skip_verify: bool = Field(
        False, description="do not check the broker's host name (test set-ups only)"
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        return self


class ReconnectConfig(StrictModel):
    initial_s: float = Field(1.0, gt=0, le=60, description="first delay after a lost connection")
    max_s: float = Field(120.0, gt=0, le=3600, description="longest delay between attempts")

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be at least initial_s ({self.initial_s})")
        return self


class MqttConfig(StrictModel):
    host: str = Field("127.0.0.1", min_length=1, max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    keepalive_s: int = Field(30, ge=5, le=3600)
    connect_timeout_s: float = Field(10.0, gt=0, le=120)
    credentials_file: str | None = Field(
        None, description="YAML with username and password, mode 0600 (written by provision)"
    )
    tls: TlsConfig | None = None
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)


class OutboxConfig(StrictModel):
    path: str | None = Field(None, description="SQLite file (default: <data_dir>/outbox.sqlite)")
    max_events: int = Field(100_000, ge=10, le=10_000_000, description="cap on stored rows")
    max_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024, description="cap on stored payload bytes")
    ack_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="a sent row with no hub ack by then is sent again"
    )
    batch_max_events: int = Field(
        250, ge=1, le=MAX_EVENTS_PER_MESSAGE, description="events per replay message"
    )
    max_in_flight: int = Field(
        8, ge=1, le=1000, description="replay messages published and not yet acked by the hub"
    )
    synchronous: Literal["full", "normal"] = Field(
        "full", description="SQLite synchronous mode: full survives power loss, normal only crashes"
    )
    state_flush_s: float = Field(5.0, gt=0, le=300, description="how often rule state is saved")


class TelemetryConfig(StrictModel):
    interval_s: float = Field(30.0, ge=1, le=3600, description="heartbeat period")
    include_readings: bool = Field(True, description="latest reading per device.register")


class LoggingConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class ModbusSettings(StrictModel):
    max_gap: int = Field(
        0, ge=0, le=32,
        description="unused registers a batched read may span to join two neighbours "
        "(0: only truly contiguous registers; some devices refuse reads of unmapped addresses)",
    )
    max_batch: int = Field(125, ge=1, le=125, description="registers per read request")
