"""Turn Modbus registers into values: pure functions, no I/O.

A value of ``width`` registers arrives as 16-bit words. ``word_order`` says which word
holds the most significant part (big: the first), ``byte_order`` which byte of each word
comes first on the wire (big: the high byte, as Modbus specifies; some devices swap).
For a 32-bit value with bytes A B C D (A most significant) the four combinations are::

    byte big,    word big     AB CD   ("ABCD", Modbus standard)
    byte big,    word little  CD AB   ("CDAB", word swap: common in meters)
    byte little, word big     BA DC   ("BADC", byte swap)
    byte little, word little  DC BA   ("DCBA", fully reversed)

The value people read is ``raw * scale + offset``; a bitfield is also split into flags
(``register.bit`` → 0/1). :func:`check_valid` says why a value is implausible.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_agent.config.registers import DataType, Order, RegisterSpec, register_width

__all__ = ["Decoded", "check_valid", "decode", "decode_raw", "registers_to_bytes"]

_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.BITFIELD: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}


def registers_to_bytes(registers: Sequence[int], byte_order: Order, word_order: Order) -> bytes:
    """The value's bytes, most significant first, from words as the device sent them."""
    words = list(registers)
    if word_order == Order.LITTLE:
        words.reverse()
    out = bytearray()
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register value {w} is not a 16-bit word")
        hi, lo = w >> 8, w & 0xFF
        out += bytes((lo, hi)) if byte_order == Order.LITTLE else bytes((hi, lo))
    return bytes(out)


def decode_raw(data_type: DataType, registers: Sequence[int], *, byte_order: Order = Order.BIG,
               word_order: Order = Order.BIG) -> int | float:
    """The number the registers hold, before scale and offset."""
    width = register_width(data_type)
    if len(registers) != width:
        raise ValueError(f"a {data_type} needs {width} register(s), got {len(registers)}")
    return struct.unpack(_STRUCT[data_type], registers_to_bytes(registers, byte_order, word_order))[0]


@dataclass(frozen=True)
class Decoded:
    """One register's reading: the scaled value, the raw number and, for a bitfield,
    its named flags."""

    value: float
    raw: int | float
    flags: dict[str, int] = field(default_factory=dict)


def decode(spec: RegisterSpec, registers: Sequence[int]) -> Decoded:
    raw = decode_raw(spec.type, registers, byte_order=spec.byte_order,
                     word_order=spec.effective_word_order)
    if spec.type == DataType.BITFIELD:
        flags = {name: (int(raw) >> bit) & 1 for name, bit in (spec.bits or {}).items()}
        return Decoded(float(raw), raw, flags)
    return Decoded(raw * spec.scale + spec.offset, raw)


def check_valid(spec: RegisterSpec, value: float) -> str | None:
    """None when ``value`` is plausible for this register, else why it is not."""
    if not math.isfinite(value):
        return f"not a finite number ({value})"
    if spec.valid is not None:
        if spec.valid.min is not None and value < spec.valid.min:
            return f"{value:g} is below the valid minimum {spec.valid.min:g}"
        if spec.valid.max is not None and value > spec.valid.max:
            return f"{value:g} is above the valid maximum {spec.valid.max:g}"
    return None
