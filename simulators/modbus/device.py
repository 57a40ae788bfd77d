"""A simulated Modbus device: a register map, current values, and how it fails.

Tests and scenario code change a device from outside (``set``, ``set_flag``,
``set_words``, ``mode``) or give it a :class:`DeviceModel` that moves its values with
time (a water meter integrating its flow). The server renders the current words on
every request, so a poll always sees the latest state.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from enum import StrEnum
from typing import Protocol

from edge_agent.config.registers import DataType, RegisterMap
from protocol.clock import Clock, SystemClock

from .encode import encode_raw, encode_value

__all__ = ["DeviceModel", "Mode", "SimulatedDevice"]


class Mode(StrEnum):
    OK = "ok"  # answers
    SILENT = "silent"  # never answers (cable cut, device dead): the client times out
    EXCEPTION = "exception"  # answers every request with a Modbus exception (device failure)
    SLOW = "slow"  # answers after ``delay_s`` (a long RS-485 line, an overloaded gateway)


class DeviceModel(Protocol):
    def update(self, device: SimulatedDevice, now: float) -> None:
        """Move the device's values to time ``now`` (monotonic seconds)."""
        ...


class SimulatedDevice:
    def __init__(
        self, unit_id: int, regmap: RegisterMap, *, model: DeviceModel | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not 0 <= unit_id <= 255:
            raise ValueError(f"unit id {unit_id} is outside 0..255")
        self.unit_id = unit_id
        self.regmap = regmap
        self.model = model
        self.clock = clock or SystemClock()
        self.mode = Mode.OK
        self.delay_s = 0.0  # how late a SLOW device answers
        self.requests = 0
        self._words: dict[str, list[int]] = {
            name: [0] * spec.width for name, spec in regmap.registers.items()
        }
        self._values: dict[str, float] = {name: 0.0 for name in regmap.registers}
        for name, spec in regmap.registers.items():
            if spec.valid and spec.valid.min is not None and spec.valid.min > 0:
                self.set(name, spec.valid.min)

    # -- changing the device -------------------------------------------------------
    def set(self, name: str, value: float) -> None:
        """Set a register to an engineering value (encoded with its scale and orders)."""
        spec = self.regmap.registers[name]
        self._words[name] = encode_value(spec, value)
        self._values[name] = float(value)

    def set_raw(self, name: str, raw: int | float) -> None:
        spec = self.regmap.registers[name]
        self._words[name] = encode_raw(spec, raw)
        self._values[name] = raw * spec.scale + spec.offset

    def set_words(self, name: str, words: list[int]) -> None:
        """Put exact words in a register (garbage, as a faulty device sends it)."""
        spec = self.regmap.registers[name]
        if len(words) != spec.width or not all(0 <= w <= 0xFFFF for w in words):
            raise ValueError(f"{name} takes {spec.width} 16-bit word(s)")
        self._words[name] = list(words)

    def set_flag(self, signal: str, on: bool) -> None:
        """Set one named bit of a bitfield register, e.g. ``status.alarm``."""
        name, _, bit_name = signal.partition(".")
        spec = self.regmap.registers[name]
        if spec.type != DataType.BITFIELD or not spec.bits or bit_name not in spec.bits:
            raise KeyError(f"{signal} is not a named bit of {self.regmap.model}")
        current = int(self._values[name])
        mask = 1 << spec.bits[bit_name]
        self.set(name, (current | mask) if on else (current & ~mask))

    def get(self, name: str) -> float:
        return self._values[name]

    # -- serving -------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring values (and, for scenario models, the fault mode) to the current time."""
        if self.model is not None:
            self.model.update(self, self.clock.monotonic())

    def render(self, function: int, start: int, registers: MutableSequence[int]) -> None:
        """Write the current words of every register of ``function`` into a block that
        starts at address ``start``."""
        for name, spec in self.regmap.registers.items():
            if spec.function != function:
                continue
            offset = spec.address - start
            registers[offset : offset + spec.width] = self._words[name]
