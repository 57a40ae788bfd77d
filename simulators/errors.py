"""Errors the simulators raise on purpose (under :class:`protocol.errors.CityopsError`).

::

    CityopsError
    └── SimulatorError        a simulator cannot run as asked (busy work directory,
                              unreachable hub, a fleet that cannot connect, ...)
"""

from __future__ import annotations

from protocol.errors import CityopsError

__all__ = ["SimulatorError"]


class SimulatorError(CityopsError):
    """A simulator cannot run as asked; the message names the cause and the fix."""
