"""The case engine: applies the pure decisions of :mod:`hub.cases` and :mod:`hub.routing`
to a :class:`hub.store.repo.Repository`, inside the writer's transaction.

:class:`CaseEngine` (operator and automatic actions on cases), :func:`apply_batch`
(ingest), :func:`tick` (deadlines, escalation, sensor closure).
"""

from .core import Actor, CaseEngine
from .ingest import BatchResult, IngestStats, apply_batch
from .tick import TickReport, tick

__all__ = ["Actor", "BatchResult", "CaseEngine", "IngestStats", "TickReport", "apply_batch", "tick"]
