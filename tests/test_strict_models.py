"""Every model people write derives from StrictModel and forbids unknown keys."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from protocol.base import StrictModel

PACKAGES = ["protocol", "edge_agent", "hub", "simulators"]


def _import_all() -> list[str]:
    failed = []
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{name}."):
            try:
                importlib.import_module(info.name)
            except ImportError as exc:  # optional extras (e.g. TensorFlow for training)
                failed.append(f"{info.name}: {exc}")
    return failed


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_strict_model_forbids_extra_keys():
    _import_all()
    subs = list(_all_subclasses(StrictModel))
    assert subs, "no StrictModel subclasses found"
    loose = [s.__qualname__ for s in subs if s.model_config.get("extra") != "forbid"]
    assert not loose, f"these config models accept unknown keys: {loose}"


@pytest.mark.parametrize("name", PACKAGES)
def test_packages_export_what_they_declare(name):
    module = importlib.import_module(name)
    for exported in getattr(module, "__all__", []):
        assert hasattr(module, exported), f"{name}.__all__ names missing {exported!r}"
