"""Devices an agent polls over Modbus: how to reach each one (TCP or RTU serial), its
register map, its polling and failure settings, and the rules watching its readings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from protocol.base import StrictModel
from protocol.ids import Id

from .rules import DeviceRules
from .sections import LocationConfig

__all__ = ["DeviceConfig", "RtuLink", "TcpLink"]


class TcpLink(StrictModel):
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: int = Field(502, ge=1, le=65535)

    @property
    def key(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class RtuLink(StrictModel):
    port: Annotated[str, Field(min_length=1, max_length=200)] = Field(
        description="serial device, e.g. /dev/ttyUSB0"
    )
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def key(self) -> str:
        return f"rtu://{self.port}"


class DeviceConfig(StrictModel):
    id: Id = Field(description="device id, unique on this agent; the `source` of its events")
    model: Id = Field(description="register map name (a key of `register_maps`)")
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id")
    tcp: TcpLink | None = Field(None, description="reach it over Modbus TCP (or a TCP gateway)")
    rtu: RtuLink | None = Field(None, description="reach it over Modbus RTU on a serial line")
    enabled: bool = True
    poll_period_s: float | None = Field(
        None, gt=0, le=86400, description="read period (default: the register map's)"
    )
    timeout_s: float = Field(1.0, gt=0, le=30, description="wait this long for each answer")
    retries: int = Field(1, ge=0, le=5, description="extra attempts before a poll counts as failed")
    down_after: int = Field(3, ge=1, le=100, description="failed polls in a row before DOWN")
    backoff_max_s: float = Field(60.0, gt=0, le=3600, description="longest wait between polls while DOWN")
    location: LocationConfig | None = Field(None, description="where the device is (default: the agent's)")
    rules: DeviceRules = Field(default_factory=DeviceRules)

    @model_validator(mode="after")
    def _one_link(self) -> DeviceConfig:
        if (self.tcp is None) == (self.rtu is None):
            raise ValueError("give exactly one of `tcp:` or `rtu:` to say how to reach the device")
        return self

    @property
    def link_key(self) -> str:
        link = self.tcp or self.rtu
        assert link is not None
        return link.key
