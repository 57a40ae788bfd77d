"""The rows behind releases and rollouts (tables ``releases``, ``rollouts``,
``rollout_agents`` and ``agent_releases``, migration m010)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from protocol.releases import ReleaseKind, ReleaseRef

__all__ = ["AgentRelease", "ReleaseRow", "RolloutAgent", "RolloutRow", "Stage"]


class Stage(StrEnum):
    CANARY = "canary"  # the release goes to the canary agents only
    ALL = "all"  # promoted: every agent in scope
    DONE = "done"  # every agent in scope runs it (or failed, within the allowed share)
    ROLLED_BACK = "rolled_back"  # every agent in scope was given back what it had before


IN_PROGRESS = (Stage.CANARY, Stage.ALL)


@dataclass
class ReleaseRow:
    release_id: str
    name: str
    version: int
    sha256: str
    bytes: int
    chunk_bytes: int
    chunks: int
    file: str
    created_at: datetime
    created_by: str
    notes: str = ""
    gate: dict[str, Any] | None = None
    kind: str = ReleaseKind.MODEL.value

    def ref(self) -> ReleaseRef:
        return ReleaseRef(release_id=self.release_id, kind=ReleaseKind(self.kind), name=self.name,
                          version=self.version, sha256=self.sha256, bytes=self.bytes,
                          chunk_bytes=self.chunk_bytes, chunks=self.chunks)


@dataclass
class RolloutRow:
    id: int
    rollout_id: str
    release_id: str
    scope: str | list[str]  # "all" or the agents named
    canary: list[str]
    canary_minutes: float
    stage: str
    started_at: datetime
    started_by: str
    stage_at: datetime
    reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    false_alarms_before: int | None = None
    false_alarms_after: int | None = None

    @property
    def in_progress(self) -> bool:
        return self.stage in IN_PROGRESS


@dataclass
class RolloutAgent:
    rollout_id: str
    agent_id: str
    canary: bool
    previous_release: str | None
    previous_rollout: str | None


@dataclass
class AgentRelease:
    """One agent's desired release and its latest report."""

    agent_id: str
    desired_release: str | None
    rollout_id: str | None
    desired_at: datetime
    published_at: datetime | None
    updated_at: datetime
    state: str | None = None
    report_release: str | None = None
    chunks_done: int = 0
    chunks: int = 0
    active: str | None = None
    reason: str | None = None
    reported_at: datetime | None = None
