"""The agent config: one YAML file per agent, composed of one model per concern.

::

    agent:          id, grid, location, data_dir          (sections.AgentSection)
    mqtt:           broker, TLS, credentials file         (sections.MqttConfig)
    outbox:         caps, ack timeout, replay pacing      (sections.OutboxConfig)
    telemetry:      heartbeat period                      (sections.TelemetryConfig)
    logging:        level, format                         (sections.LoggingConfig)
    modbus:         request batching                      (sections.ModbusSettings)
    register_maps:  name -> YAML file of a device model   (registers.RegisterMap)
    devices:        Modbus devices and their rules        (devices.DeviceConfig)

Other sources add their own section here (e.g. ``cameras:`` and ``detector:``) with
their own model module and their own checks in :mod:`edge_agent.config.checks`.
"""

from __future__ import annotations

from pydantic import Field

from protocol.base import StrictModel
from protocol.ids import Id

from .devices import DeviceConfig
from .sections import (
    AgentSection,
    LoggingConfig,
    ModbusSettings,
    MqttConfig,
    OutboxConfig,
    TelemetryConfig,
)

__all__ = ["AgentConfig"]


class AgentConfig(StrictModel):
    agent: AgentSection
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    modbus: ModbusSettings = Field(default_factory=ModbusSettings)
    register_maps: dict[Id, str] = Field(
        default_factory=dict, description="register map name -> YAML file (relative to this file)"
    )
    devices: list[DeviceConfig] = Field(default_factory=list)
