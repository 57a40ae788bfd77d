"""The case engine: applies the pure decisions of :mod:`hub.cases` and :mod:`hub.routing`
to a :class:`hub.store.repo.Repository`, inside the writer's transaction.

:class:`CaseEngine` (operator and automatic actions on cases), ``Ingestor`` (applied by
the writer, ``hub.writer.Writer._apply``), :func:`tick` (deadlines, escalation, sensor closure).
"""

from .core import Actor, CaseEngine
from .intake import BatchResult, IngestStats
from .tick import TickReport, tick

__all__ = ["Actor", "BatchResult", "CaseEngine", "IngestStats", "TickReport", "tick"]
