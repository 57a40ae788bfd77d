"""Batching register reads into as few requests as the limits allow."""

from __future__ import annotations

from edge_agent.config.registers import RegisterMap, RegisterSpec
from edge_agent.modbus.plan import Read, plan_by_period, plan_reads, slice_read


def spec(address, type_="uint16", function=3, **kw):
    return RegisterSpec(address=address, type=type_, function=function, **kw)


def test_contiguous_registers_share_one_request():
    specs = {"a": spec(0, "uint32"), "b": spec(2, "float32"), "c": spec(4), "d": spec(5, "float64")}
    assert plan_reads(specs) == [Read(3, 0, 9, ("a", "b", "c", "d"))]


def test_a_gap_splits_unless_max_gap_allows_it():
    specs = {"a": spec(0), "b": spec(3)}
    assert plan_reads(specs) == [Read(3, 0, 1, ("a",)), Read(3, 3, 1, ("b",))]
    assert plan_reads(specs, max_gap=2) == [Read(3, 0, 4, ("a", "b"))]


def test_function_codes_never_mix():
    specs = {"h": spec(0), "i": spec(1, function=4)}
    assert plan_reads(specs) == [Read(3, 0, 1, ("h",)), Read(4, 1, 1, ("i",))]


def test_max_batch_bounds_each_request():
    specs = {f"r{i}": spec(i * 2, "uint32") for i in range(100)}  # 200 contiguous registers
    reads = plan_reads(specs, max_batch=125)
    assert [r.count for r in reads] == [124, 76]
    assert sum(len(r.registers) for r in reads) == 100
    assert all(r.count <= 125 for r in reads)


def test_slice_returns_each_registers_words():
    specs = {"a": spec(10, "uint32"), "b": spec(12)}
    (read,) = plan_reads(specs)
    assert slice_read(read, [1, 2, 3], specs["a"]) == [1, 2]
    assert slice_read(read, [1, 2, 3], specs["b"]) == [3]


def test_registers_with_their_own_period_form_their_own_group():
    regmap = RegisterMap(model="m", poll_period_s=10, registers={
        "a": spec(0), "b": spec(1, poll_period_s=600), "c": spec(2)})
    plan = plan_by_period(regmap, 5)
    assert plan == {5: [Read(3, 0, 1, ("a",)), Read(3, 2, 1, ("c",))], 600: [Read(3, 1, 1, ("b",))]}
