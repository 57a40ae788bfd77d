"""Errors the edge agent raises on purpose, under :class:`protocol.errors.CityopsError`.

::

    CityopsError
    └── AgentError                  something the agent could not do (has context fields)
        ├── OutboxError             the outbox could not store or change a row
        │   └── OutboxFullError     the cap is reached and nothing may be dropped
        ├── DeviceError             a Modbus device did not answer or answered wrongly
        │   ├── DeviceTimeout       no answer within the timeout (after retries)
        │   └── DeviceException     the device answered with a Modbus exception code
        ├── TransportError          the MQTT connection failed (transient: retried)
        │   └── AuthError           the broker refused our credentials (not retried)
        ├── DesiredConfigError      a pushed config was refused (the old one keeps running)
        └── ProvisioningError       enrollment with the hub failed (wrong/used/expired token,
                                    hub unreachable, files not writable)

Each carries the context needed to act on it and reads well on its own.
"""

from __future__ import annotations

from protocol.errors import CityopsError

__all__ = [
    "AgentError",
    "AuthError",
    "DesiredConfigError",
    "DeviceError",
    "DeviceException",
    "DeviceTimeout",
    "OutboxError",
    "OutboxFullError",
    "ProvisioningError",
    "TransportError",
]


class AgentError(CityopsError):
    """Base of the agent's own errors."""


class OutboxError(AgentError):
    def __init__(self, message: str, *, path: str | None = None, event_id: str | None = None):
        self.path = path
        self.event_id = event_id
        where = f" ({path})" if path else ""
        what = f" for event {event_id}" if event_id else ""
        super().__init__(f"outbox{where}{what}: {message}")


class OutboxFullError(OutboxError):
    """The outbox is at its cap and holds nothing the drop policy may remove."""


class DeviceError(AgentError):
    def __init__(self, device_id: str, message: str):
        self.device_id = device_id
        super().__init__(f"device {device_id}: {message}")


class DeviceTimeout(DeviceError):
    pass


class DeviceException(DeviceError):
    def __init__(self, device_id: str, code: int, message: str):
        self.code = code
        super().__init__(device_id, message)


class TransportError(AgentError):
    def __init__(self, message: str, *, host: str | None = None, port: int | None = None):
        self.host = host
        self.port = port
        where = f" {host}:{port}" if host else ""
        super().__init__(f"MQTT broker{where}: {message}")


class AuthError(TransportError):
    """Bad credentials or not authorised: retrying will not help; fix the credentials."""


class DesiredConfigError(AgentError):
    def __init__(self, version: int, reason: str):
        self.version = version
        self.reason = reason
        super().__init__(f"desired config version {version} refused: {reason}")


class ProvisioningError(AgentError):
    def __init__(self, message: str, *, hub: str | None = None):
        self.hub = hub
        where = f" with {hub}" if hub else ""
        super().__init__(f"provisioning{where} failed: {message}")
