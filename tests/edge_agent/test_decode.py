"""Decoding registers: every data type in every byte and word order, against words
written out by hand, plus a property test against pymodbus's own encoder."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from edge_agent.config.registers import DataType, Order, RegisterSpec, ValidRange
from edge_agent.modbus.decode import check_valid, decode, decode_raw, registers_to_bytes

B, L = Order.BIG, Order.LITTLE

# (type, expected value, {(byte_order, word_order): words as the device sends them})
VECTORS = [
    (DataType.INT16, 4660, {(B, B): [0x1234], (L, B): [0x3412]}),
    (DataType.INT16, -12345, {(B, B): [0xCFC7], (L, B): [0xC7CF]}),
    (DataType.UINT16, 43981, {(B, B): [0xABCD], (L, B): [0xCDAB]}),
    (DataType.BITFIELD, 0x0025, {(B, B): [0x0025], (L, B): [0x2500]}),
    (DataType.INT32, 0x12345678, {
        (B, B): [0x1234, 0x5678], (B, L): [0x5678, 0x1234],
        (L, B): [0x3412, 0x7856], (L, L): [0x7856, 0x3412]}),
    (DataType.INT32, -123456789, {  # 0xF8A432EB
        (B, B): [0xF8A4, 0x32EB], (B, L): [0x32EB, 0xF8A4],
        (L, B): [0xA4F8, 0xEB32], (L, L): [0xEB32, 0xA4F8]}),
    (DataType.UINT32, 0xDEADBEEF, {
        (B, B): [0xDEAD, 0xBEEF], (B, L): [0xBEEF, 0xDEAD],
        (L, B): [0xADDE, 0xEFBE], (L, L): [0xEFBE, 0xADDE]}),
    (DataType.FLOAT32, struct.unpack(">f", bytes.fromhex("40490FDB"))[0], {  # pi as float32
        (B, B): [0x4049, 0x0FDB], (B, L): [0x0FDB, 0x4049],
        (L, B): [0x4940, 0xDB0F], (L, L): [0xDB0F, 0x4940]}),
    (DataType.FLOAT64, math.pi, {  # 0x400921FB54442D18
        (B, B): [0x4009, 0x21FB, 0x5444, 0x2D18], (B, L): [0x2D18, 0x5444, 0x21FB, 0x4009],
        (L, B): [0x0940, 0xFB21, 0x4454, 0x182D], (L, L): [0x182D, 0x4454, 0xFB21, 0x0940]}),
]

CASES = [
    pytest.param(t, v, bo, wo, words, id=f"{t}-{v}-byte_{bo}-word_{wo}")
    for t, v, table in VECTORS for (bo, wo), words in table.items()
]


def test_vectors_cover_every_type_and_order():
    seen = {(t, bo, wo) for t, _v, table in VECTORS for (bo, wo) in table}
    for t in DataType:
        orders = [(B, B), (L, B)] if t in (DataType.INT16, DataType.UINT16, DataType.BITFIELD) else \
            [(B, B), (B, L), (L, B), (L, L)]
        for bo, wo in orders:
            assert (t, bo, wo) in seen, f"no vector for {t} byte {bo} word {wo}"


@pytest.mark.parametrize(("data_type", "value", "byte_order", "word_order", "words"), CASES)
def test_decode_raw_every_type_and_order(data_type, value, byte_order, word_order, words):
    assert decode_raw(data_type, words, byte_order=byte_order, word_order=word_order) == value


@pytest.mark.parametrize(("data_type", "value", "byte_order", "word_order", "words"), CASES)
def test_decode_applies_scale_and_offset(data_type, value, byte_order, word_order, words):
    if data_type == DataType.BITFIELD:
        spec = RegisterSpec(address=0, type=data_type, byte_order=byte_order,
                            bits={"a": 0, "b": 2, "c": 5, "d": 1})
        out = decode(spec, words)
        assert out.flags == {"a": 1, "b": 1, "c": 1, "d": 0}
        assert out.value == value
        return
    wo = word_order if len(words) > 1 else None
    spec = RegisterSpec(address=0, type=data_type, byte_order=byte_order, word_order=wo,
                        scale=0.5, offset=-3)
    assert decode(spec, words).value == pytest.approx(value * 0.5 - 3)
    assert decode(spec, words).raw == value


def test_wrong_word_count_and_out_of_range_words_are_refused():
    with pytest.raises(ValueError, match="needs 2 register"):
        decode_raw(DataType.FLOAT32, [1])
    with pytest.raises(ValueError, match="not a 16-bit word"):
        registers_to_bytes([0x10000], B, B)


def test_check_valid_rejects_out_of_range_and_non_finite():
    spec = RegisterSpec(address=0, type=DataType.FLOAT32, valid=ValidRange(min=0, max=10))
    assert check_valid(spec, 5.0) is None
    assert "below" in check_valid(spec, -0.1)
    assert "above" in check_valid(spec, 10.5)
    assert "finite" in check_valid(spec, math.nan)
    assert "finite" in check_valid(RegisterSpec(address=0, type=DataType.FLOAT64), math.inf)


# -- property: our decoder inverts pymodbus's encoder in every order ----------------

_PYMODBUS_TYPE = {
    DataType.INT16: ModbusTcpClient.DATATYPE.INT16,
    DataType.UINT16: ModbusTcpClient.DATATYPE.UINT16,
    DataType.INT32: ModbusTcpClient.DATATYPE.INT32,
    DataType.UINT32: ModbusTcpClient.DATATYPE.UINT32,
    DataType.FLOAT32: ModbusTcpClient.DATATYPE.FLOAT32,
    DataType.FLOAT64: ModbusTcpClient.DATATYPE.FLOAT64,
}
_RANGES = {
    DataType.INT16: st.integers(-(2**15), 2**15 - 1),
    DataType.UINT16: st.integers(0, 2**16 - 1),
    DataType.INT32: st.integers(-(2**31), 2**31 - 1),
    DataType.UINT32: st.integers(0, 2**32 - 1),
    DataType.FLOAT32: st.floats(width=32, allow_nan=False),
    DataType.FLOAT64: st.floats(allow_nan=False),
}


@st.composite
def typed_values(draw):
    data_type = draw(st.sampled_from(sorted(_PYMODBUS_TYPE)))
    return data_type, draw(_RANGES[data_type]), draw(st.sampled_from(list(Order))), \
        draw(st.sampled_from(list(Order)))


@given(typed_values())
def test_decoding_inverts_pymodbus_encoding(case):
    data_type, value, byte_order, word_order = case
    words = ModbusTcpClient.convert_to_registers(value, _PYMODBUS_TYPE[data_type], word_order=word_order.value)
    if byte_order == Order.LITTLE:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    if data_type in (DataType.INT16, DataType.UINT16):
        word_order = Order.BIG  # one register: the word order cannot matter
    got = decode_raw(data_type, words, byte_order=byte_order, word_order=word_order)
    assert got == value or (isinstance(value, float) and math.isinf(value) and got == value)
