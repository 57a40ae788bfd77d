"""Behaviour models that move a simulated device's values with time.

A first set for the sensors the agent ships register maps for; the scenario simulators
grow from here (days of water use, rain storms filling an underpass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import SimulatedDevice

__all__ = ["WaterMeterModel"]


@dataclass
class WaterMeterModel:
    """A meter whose volume integrates its flow: set ``flow_m3h`` and the volume grows.

    ``volume_register`` and ``flow_register`` name the map's registers."""

    flow_m3h: float = 0.0
    volume_m3: float = 0.0
    volume_register: str = "volume"
    flow_register: str = "flow"
    _last: float | None = field(default=None, repr=False)

    def update(self, device: SimulatedDevice, now: float) -> None:
        if self._last is not None and now > self._last:
            self.volume_m3 += self.flow_m3h * (now - self._last) / 3600.0
        self._last = now
        device.set(self.volume_register, self.volume_m3)
        device.set(self.flow_register, self.flow_m3h)
