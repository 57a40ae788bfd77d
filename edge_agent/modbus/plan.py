"""Which read requests cover a device's registers: pure batching.

Registers of one function code that sit next to each other (or within ``max_gap``
unused addresses) are read with one request of at most ``max_batch`` registers; each
request knows which registers it carries, so its answer can be sliced back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge_agent.config.registers import RegisterMap, RegisterSpec

__all__ = ["Read", "plan_by_period", "plan_reads", "slice_read"]


@dataclass(frozen=True)
class Read:
    function: int  # 3 holding, 4 input
    address: int
    count: int
    registers: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.address + self.count - 1


def plan_reads(specs: Mapping[str, RegisterSpec], *, max_gap: int = 0, max_batch: int = 125) -> list[Read]:
    """Group registers into as few requests as the limits allow, in address order."""
    by_function: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for name, spec in specs.items():
        by_function[spec.function].append((spec.address, spec.width, name))
    reads: list[Read] = []
    for function in sorted(by_function):
        items = sorted(by_function[function])
        start, end, names = items[0][0], items[0][0] + items[0][1] - 1, [items[0][2]]
        for address, width, name in items[1:]:
            new_end = max(end, address + width - 1)
            if address - end - 1 > max_gap or new_end - start + 1 > max_batch:
                reads.append(Read(function, start, end - start + 1, tuple(names)))
                start, end, names = address, address + width - 1, [name]
            else:
                end, names = new_end, [*names, name]
        reads.append(Read(function, start, end - start + 1, tuple(names)))
    return reads


def plan_by_period(
    regmap: RegisterMap, device_period_s: float | None, *, max_gap: int = 0, max_batch: int = 125
) -> dict[float, list[Read]]:
    """Requests per read period: registers with their own ``poll_period_s`` form their own
    groups; the rest are read at the device's period (or the map's default)."""
    default = device_period_s or regmap.poll_period_s
    groups: dict[float, dict[str, RegisterSpec]] = defaultdict(dict)
    for name, spec in regmap.registers.items():
        groups[spec.poll_period_s or default][name] = spec
    return {
        period: plan_reads(specs, max_gap=max_gap, max_batch=max_batch)
        for period, specs in sorted(groups.items())
    }


def slice_read(read: Read, values: Sequence[int], spec: RegisterSpec) -> list[int]:
    """The words of one register out of a batched answer."""
    if len(values) < read.count:
        raise ValueError(f"expected {read.count} registers, got {len(values)}")
    offset = spec.address - read.address
    return list(values[offset : offset + spec.width])
