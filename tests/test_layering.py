"""The packages keep their layers: every import statement of every module (read with
``ast``, so imports inside functions and under ``TYPE_CHECKING`` count too) stays inside
what its package may use.

* ``protocol``: the shared contract, imports nothing else of ours;
* ``vision``: the inference runtime, on ``protocol`` only, so the agent and the hub can
  both use it;
* ``edge_agent`` and ``hub``: never each other's code, never the simulators, never the
  training tools (the agent's ``train-model``/``eval-model`` reach ``training`` by name at
  run time, so an agent without the ``train`` extra still starts);
* ``training``: the offline tools, the one package beside them that may import
  ``simulators``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("protocol", "vision", "edge_agent", "hub", "simulators", "training")
FORBIDDEN = {
    "protocol": {"vision", "edge_agent", "hub", "simulators", "training"},
    "vision": {"edge_agent", "hub", "simulators", "training"},
    "edge_agent": {"hub", "simulators", "training"},
    "hub": {"edge_agent", "simulators", "training"},
}


def imported_packages(source: str, module: str) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every import in ``source``; relative imports resolve
    against ``module`` (dotted, e.g. ``hub.verify.detector``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level] or [module.split(".")[0]]
                found.append((node.lineno, base[0]))
            elif node.module:
                found.append((node.lineno, node.module.split(".")[0]))
    return found


def violations(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts)
        for line, top in imported_packages(path.read_text(encoding="utf-8"), module):
            if top in FORBIDDEN[package]:
                out.append(f"{rel}:{line} imports {top}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_the_layers_it_may(package):
    assert (ROOT / package / "__init__.py").is_file()
    bad = violations(package)
    assert not bad, f"{package} must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(bad)


def test_the_checker_sees_every_kind_of_import():
    source = (
        "import os, hub.cases\n"
        "from edge_agent.camera import config\n"
        "def f():\n"
        "    from simulators.scenes import render\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import training.train\n"
        "from . import sibling\n"
        "from ..other import thing\n"
    )
    tops = sorted((line, top) for line, top in imported_packages(source, "vision.sub.mod"))
    assert tops == [(1, "hub"), (1, "os"), (2, "edge_agent"), (4, "simulators"), (5, "typing"),
                    (7, "training"), (8, "vision"), (9, "vision")]
    tops = [top for _, top in tops]
    assert set(tops) & FORBIDDEN["vision"] == {"hub", "edge_agent", "simulators", "training"}
