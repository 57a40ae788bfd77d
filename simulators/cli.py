"""``cityops-sim``: one command for every simulator.

::

    cityops-sim modbus ...     simulated Modbus devices (TCP or RTU), scenarios and faults
    cityops-sim camera ...     rendered scenes as video files and live MJPEG streams
    cityops-sim fleet ...      thousands of virtual agents as real MQTT clients
    cityops-sim handlers ...   departments working their cases through the hub's handler API
    cityops-sim demo ...       broker, hub, agents and simulators together, scored

Each simulator is a module with a docstring naming the client it serves and a
``main(argv=None) -> int``; adding one is one line in :data:`SIMULATORS`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["SIMULATORS", "main"]

# name -> module with main(argv) and a docstring whose first line is the help text
SIMULATORS: dict[str, str] = {
    "modbus": "simulators.modbus.cli",
    "camera": "simulators.camera",
    "fleet": "simulators.fleet",
    "handlers": "simulators.handlers.cli",
    "demo": "simulators.demo",
}


def _summary(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # a simulator whose optional dependency is missing
        return f"(unavailable: {exc})"
    doc = (module.__doc__ or "").strip().splitlines()
    return doc[0].split(": ", 1)[-1] if doc else ""


def usage() -> str:
    lines = ["usage: cityops-sim SIMULATOR [ARGS...]   (cityops-sim SIMULATOR --help for its options)", "",
             "simulators:"]
    for name, module in SIMULATORS.items():
        lines.append(f"  {name:<10} {_summary(module)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SIMULATORS:
        print(f"cityops-sim: error: unknown simulator {name!r}; choose from {', '.join(SIMULATORS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(SIMULATORS[name])
    return int(module.main(rest) or 0)
