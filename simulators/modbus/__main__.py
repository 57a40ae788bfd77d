"""``python -m simulators.modbus``: see :mod:`simulators.modbus.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
