"""Values to registers, as a device would send them.

Deliberately independent of the agent's decoder (:mod:`edge_agent.modbus.decode`): the
word order comes from pymodbus's own ``convert_to_registers`` and the byte swap is done
here, so a test that polls this simulator checks the agent against a second
implementation rather than against itself.
"""

from __future__ import annotations

from pymodbus.client.mixin import ModbusClientMixin

from edge_agent.config.registers import DataType, Order, RegisterSpec

__all__ = ["encode_raw", "encode_value", "swap_bytes"]

_DT = ModbusClientMixin.DATATYPE
_PYMODBUS = {
    DataType.INT16: _DT.INT16,
    DataType.UINT16: _DT.UINT16,
    DataType.BITFIELD: _DT.UINT16,
    DataType.INT32: _DT.INT32,
    DataType.UINT32: _DT.UINT32,
    DataType.FLOAT32: _DT.FLOAT32,
    DataType.FLOAT64: _DT.FLOAT64,
}
_INT_RANGE = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.BITFIELD: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


def swap_bytes(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def encode_raw(spec: RegisterSpec, raw: int | float) -> list[int]:
    """Words for a raw number (before scale/offset), in the register's byte/word order."""
    if spec.type in _INT_RANGE:
        lo, hi = _INT_RANGE[spec.type]
        raw = int(raw)
        if not lo <= raw <= hi:
            raise ValueError(f"{raw} does not fit a {spec.type}")
    else:
        raw = float(raw)
    words = ModbusClientMixin.convert_to_registers(
        raw, _PYMODBUS[spec.type], word_order=spec.effective_word_order.value
    )
    return swap_bytes(words) if spec.byte_order == Order.LITTLE else list(words)


def encode_value(spec: RegisterSpec, value: float) -> list[int]:
    """Words for an engineering value (``raw * scale + offset``)."""
    if spec.type == DataType.BITFIELD:
        return encode_raw(spec, int(value))
    raw = (value - spec.offset) / spec.scale
    if spec.type in _INT_RANGE:
        raw = round(raw)
    return encode_raw(spec, raw)
