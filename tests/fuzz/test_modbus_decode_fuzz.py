"""Property tests of the Modbus value decoder: every word order and byte order
round-trips against an independent encoder; any 16-bit words decode to a number without
raising; non-finite or out-of-range values always come with a reason (so garbage never
becomes an alarm); wrong widths and non-16-bit words are a ValueError that says so."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config.registers import DataType, Order, RegisterSpec, ValidRange, register_width
from edge_agent.modbus.decode import check_valid, decode, decode_raw

FORMATS = {DataType.INT16: ">h", DataType.UINT16: ">H", DataType.BITFIELD: ">H", DataType.INT32: ">i",
           DataType.UINT32: ">I", DataType.FLOAT32: ">f", DataType.FLOAT64: ">d"}
orders = st.sampled_from([Order.BIG, Order.LITTLE])
# Words that make NaN and infinities (float32 and float64 exponents all ones) come up often.
words = st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0x7FC0, 0x7F80, 0xFF80, 0x7FF8, 0x7FF0, 0xFFFF, 0]))


def to_registers(fmt: str, value, byte_order: Order, word_order: Order) -> list[int]:
    """What a device sends: the value's big-endian bytes, split into words, each word's
    bytes swapped for little byte order, the words reversed for little word order."""
    raw = struct.pack(fmt, value)
    regs = []
    for i in range(0, len(raw), 2):
        hi, lo = raw[i], raw[i + 1]
        regs.append((lo << 8 | hi) if byte_order == Order.LITTLE else (hi << 8 | lo))
    return regs[::-1] if word_order == Order.LITTLE else regs


def values_for(data_type: DataType):
    return {
        DataType.INT16: st.integers(-2**15, 2**15 - 1), DataType.UINT16: st.integers(0, 2**16 - 1),
        DataType.BITFIELD: st.integers(0, 2**16 - 1), DataType.INT32: st.integers(-2**31, 2**31 - 1),
        DataType.UINT32: st.integers(0, 2**32 - 1),
        DataType.FLOAT32: st.floats(width=32, allow_nan=False),
        DataType.FLOAT64: st.floats(allow_nan=False),
    }[data_type]


@st.composite
def typed_values(draw):
    data_type = draw(st.sampled_from(list(FORMATS)))
    return data_type, draw(values_for(data_type))


@given(typed_values(), orders, orders)
def test_every_order_round_trips(typed, byte_order, word_order):
    data_type, value = typed
    regs = to_registers(FORMATS[data_type], value, byte_order, word_order)
    assert len(regs) == register_width(data_type)
    got = decode_raw(data_type, regs, byte_order=byte_order, word_order=word_order)
    assert got == value or (math.isinf(value) and got == value)


@given(st.sampled_from(list(FORMATS)), orders, orders, st.data(),
       st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(-1e9, 1e9), st.floats(-1e9, 1e9))
def test_any_words_decode_and_implausible_values_say_why(data_type, byte_order, word_order, data,
                                                        scale, offset, lo, hi):
    regs = data.draw(st.lists(words, min_size=register_width(data_type),
                              max_size=register_width(data_type)))
    bits = {"a": 0, "b": 15} if data_type == DataType.BITFIELD else None
    spec = RegisterSpec(address=0, type=data_type, byte_order=byte_order, word_order=word_order
                        if register_width(data_type) > 1 else None, scale=scale, offset=offset,
                        valid=ValidRange(min=min(lo, hi), max=max(lo, hi)), bits=bits)
    out = decode(spec, regs)  # never raises for 16-bit words of the right width
    if data_type == DataType.BITFIELD:
        assert set(out.flags) == {"a", "b"} and all(v in (0, 1) for v in out.flags.values())
        return
    reason = check_valid(spec, out.value)
    if not math.isfinite(out.value) or not min(lo, hi) <= out.value <= max(lo, hi):
        assert reason, f"{out.value} passed as plausible"
    else:
        assert reason is None


@given(st.sampled_from(list(FORMATS)), st.lists(words, max_size=6))
def test_wrong_width_is_a_value_error_naming_the_width(data_type, regs):
    width = register_width(data_type)
    if len(regs) == width:
        return
    with pytest.raises(ValueError, match=f"needs {width} register"):
        decode_raw(data_type, regs)


@given(st.sampled_from(list(FORMATS)), st.integers().filter(lambda w: not 0 <= w <= 0xFFFF))
def test_words_outside_16_bits_are_refused(data_type, bad):
    regs = [bad] * register_width(data_type)
    with pytest.raises(ValueError, match="16-bit"):
        decode_raw(data_type, regs)
