"""Departments that work their cases through the hub's handler API (``cityops-sim
handlers``): :mod:`.policy` decides (pure, by seed) what a department does with a case,
:mod:`.photos` renders its after-photo, :mod:`.client` speaks the API, :mod:`.department`
runs one department's loop, :mod:`.cli` is the command."""

from __future__ import annotations

from .department import Department, HandlerLog, HandlerRun
from .policy import OUTCOMES, Plan, Shares, plan_case

__all__ = ["OUTCOMES", "Department", "HandlerLog", "HandlerRun", "Plan", "Shares", "plan_case"]
