"""Agent configuration: strict models (one per concern), the loader with file:line:col
errors, and the cross-object checks. See :mod:`edge_agent.config.model` for the layout."""

from .devices import DeviceConfig, RtuLink, TcpLink
from .loader import LoadedConfig, apply_overlay, load_agent_config, load_register_map, merge_patch
from .model import AgentConfig
from .registers import DataType, Order, RegisterMap, RegisterSpec, ValidRange
from .rules import (
    AlarmRuleConfig,
    ContinuousFlowConfig,
    DeviceRules,
    LevelConfig,
    NotifyTier,
    WaterNoUseConfig,
)
from .sections import (
    AgentSection,
    LocationConfig,
    LoggingConfig,
    ModbusSettings,
    MqttConfig,
    OutboxConfig,
    TelemetryConfig,
    TlsConfig,
)

__all__ = [
    "AgentConfig",
    "AgentSection",
    "AlarmRuleConfig",
    "ContinuousFlowConfig",
    "DataType",
    "DeviceConfig",
    "DeviceRules",
    "LevelConfig",
    "LoadedConfig",
    "LocationConfig",
    "LoggingConfig",
    "ModbusSettings",
    "MqttConfig",
    "NotifyTier",
    "Order",
    "OutboxConfig",
    "RegisterMap",
    "RegisterSpec",
    "RtuLink",
    "TcpLink",
    "TelemetryConfig",
    "TlsConfig",
    "ValidRange",
    "WaterNoUseConfig",
    "apply_overlay",
    "load_agent_config",
    "load_register_map",
    "merge_patch",
]
