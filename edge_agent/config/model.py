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
    cameras:        camera streams, files, devices        (edge_agent.camera.config.CameraConfig)
    zones:          polygon zones drawn on cameras        (edge_agent.camera.config.ZoneConfig)
    detector:       the shared detector model             (edge_agent.camera.config.DetectorConfig)

Each source keeps its models in its own module; their cross-object checks are in
:data:`edge_agent.config.checks.AGENT_CHECKS`. Validate with ``context={"base_dir": ...}``
(the loader does) so relative camera files and model paths resolve against the file.
"""

from __future__ import annotations

from pydantic import Field

from edge_agent.camera.config import CameraConfig, CameraSection, DetectorConfig, ZoneConfig
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
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=256, description="the cameras this agent reads")
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=1024, description="polygon zones on cameras")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="the detector all cameras share")

    def camera_section(self) -> CameraSection:
        """The camera part as the camera side's own model (already checked by the loader)."""
        return CameraSection.model_construct(cameras=self.cameras, zones=self.zones, detector=self.detector)
