"""Register maps: what a device model exposes over Modbus, as reusable YAML.

One file per device model (``firmware_configs/register_maps/*.yaml``); every device of
that model points at it by name. Each register says where it is (function code 3
holding / 4 input, address), how to decode it (data type, byte and word order), how to
turn the raw number into a value people read (scale, offset, unit), how often to read it
and which values are plausible (a reading outside ``valid`` is rejected and counted,
never turned into an alarm).

Decoding itself lives in :mod:`edge_agent.modbus.decode`; the checks that span fields
(an order a type cannot have, overlapping registers) live in
:mod:`edge_agent.config.checks`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from protocol.base import StrictModel
from protocol.ids import Id

__all__ = [
    "DataType",
    "Order",
    "RegisterMap",
    "RegisterName",
    "RegisterSpec",
    "ValidRange",
    "register_width",
]

# Register and bit names join as "register.bit" into signal names (and reading names on
# the wire), so they use a narrower alphabet than ids.
RegisterName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BITFIELD = "bitfield"  # 16 flags in one register


class Order(StrEnum):
    BIG = "big"
    LITTLE = "little"


_WIDTH = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.BITFIELD: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}


def register_width(data_type: DataType) -> int:
    """How many 16-bit registers a value of this type spans."""
    return _WIDTH[DataType(data_type)]


class ValidRange(StrictModel):
    """Plausible values, after scale and offset. Outside: the reading is rejected."""

    min: float | None = Field(None, description="lowest plausible value (inclusive)")
    max: float | None = Field(None, description="highest plausible value (inclusive)")


class RegisterSpec(StrictModel):
    """One value a device exposes."""

    function: Literal[3, 4] = Field(
        3, description="Modbus function code to read it: 3 holding registers, 4 input registers"
    )
    address: int = Field(ge=0, le=65535, description="0-based register address (PDU address)")
    type: DataType = Field(description="int16 uint16 int32 uint32 float32 float64 bitfield")
    count: int | None = Field(
        None, ge=1, le=4, description="registers spanned; optional, must match the type when given"
    )
    byte_order: Order = Field(Order.BIG, description="byte order inside each register")
    word_order: Order | None = Field(
        None,
        description="register order of multi-register types (big: most significant first); "
        "not allowed for 16-bit types",
    )
    scale: float = Field(1.0, description="value = raw * scale + offset")
    offset: float = 0.0
    unit: Annotated[str, Field(max_length=16)] = ""
    poll_period_s: float | None = Field(
        None, gt=0, le=86400, description="read this register at its own period (default: the map's)"
    )
    valid: ValidRange | None = Field(None, description="plausible range; readings outside are rejected")
    bits: dict[RegisterName, Annotated[int, Field(ge=0, le=15)]] | None = Field(
        None, description="bitfield only: flag name -> bit number (0 = least significant)"
    )
    description: Annotated[str, Field(max_length=200)] = ""

    @property
    def width(self) -> int:
        return register_width(self.type)

    @property
    def effective_word_order(self) -> Order:
        return self.word_order or Order.BIG


class RegisterMap(StrictModel):
    """A device model's registers. ``model`` names it in agent configs' ``register_maps``."""

    model: Id = Field(description="device model id, e.g. water_meter_v1")
    vendor: Annotated[str, Field(max_length=100)] = ""
    description: Annotated[str, Field(max_length=500)] = ""
    poll_period_s: float = Field(10.0, gt=0, le=86400, description="default read period")
    registers: dict[RegisterName, RegisterSpec] = Field(min_length=1)

    def signals(self) -> dict[str, tuple[str, str | None]]:
        """Every name a rule may refer to: ``register`` and ``register.bit``
        → (register, bit or None)."""
        out: dict[str, tuple[str, str | None]] = {}
        for name, spec in self.registers.items():
            out[name] = (name, None)
            for bit in spec.bits or {}:
                out[f"{name}.{bit}"] = (name, bit)
        return out
