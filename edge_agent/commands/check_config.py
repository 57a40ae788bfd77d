"""``cityops-agent check-config FILE...``: validate agent configs and register maps
without touching any device. Exit 0 when every file is valid, 1 otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from edge_agent.cli import command
from edge_agent.config import load_agent_config, load_register_map
from protocol.errors import ConfigError


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="agent configs or register maps (YAML)")


def _kind(path: Path) -> str:
    """'map' for a register map, 'agent' otherwise (decided by its top-level keys)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return "agent"  # let the loader report it with its position
    if isinstance(data, dict) and "registers" in data and "agent" not in data:
        return "map"
    return "agent"


def check_file(path: Path) -> str:
    """A one-line summary of a valid file; raises ConfigError otherwise."""
    if _kind(path) == "map":
        regmap, _ = load_register_map(path)
        return f"register map {regmap.model!r}, {len(regmap.registers)} registers"
    loaded = load_agent_config(path)
    cfg = loaded.config
    rules = sum(len(d.rules.configured()) for d in cfg.devices)
    cameras = f", {len(cfg.cameras)} camera(s), {len(cfg.zones)} zone(s)" if cfg.cameras else ""
    return (f"agent {cfg.agent.id!r}, {len(cfg.devices)} device(s), {len(loaded.maps)} register "
            f"map(s), {rules} rule(s){cameras}")


@command("check-config", "validate agent configs and register maps (exit 0 when all are valid)", _configure)
def check_config(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            summary = check_file(path)
        except ConfigError as exc:
            failed += 1
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        print(f"{path}: ok ({summary})")
    if failed:
        print(f"{failed} of {len(args.files)} file(s) invalid", file=sys.stderr)
    return 1 if failed else 0
