"""The durable outbox (SQLite, WAL): see :mod:`edge_agent.outbox.store`."""

from .policy import Candidate, DropPlan, plan_drops
from .store import AckResult, Outbox, OutboxRow

__all__ = ["AckResult", "Candidate", "DropPlan", "Outbox", "OutboxRow", "plan_drops"]
