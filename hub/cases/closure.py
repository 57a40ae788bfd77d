"""Automatic closure decisions. Pure, apart from the :class:`Verifier` seam.

* Sensor cases (close mode ``sensor_clear``) close when every source feeding the case
  has sent its ``end`` and stayed clear for the hold time.
* Photo cases (close mode ``photo``) close when a :class:`Verifier` compares the
  before-photo with an after-photo (a handler's, or a fresh agent snapshot sent with the
  detection's ``end``) and says *fixed* with enough confidence. *Not fixed* sends the
  case back to its department; *uncertain* (or a low confidence, or no verifier) goes to
  an operator, never to closed.

The verifier that aligns the photos (ORB features + RANSAC homography) and compares the
region (SSIM, the detector) plugs in here; the hub ships :class:`NoVerifier`, which
always answers *uncertain*, so every photo goes to an operator until a real one is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

__all__ = [
    "ClosureStep",
    "NoVerifier",
    "Outcome",
    "Verdict",
    "Verifier",
    "decide_on_verdict",
    "sensor_close_due",
]

Region = tuple[float, float, float, float]  # x1, y1, x2, y2 normalised to 0..1


class Outcome(StrEnum):
    FIXED = "fixed"
    NOT_FIXED = "not_fixed"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    confidence: float
    detail: str = ""
    verifier: str = ""


class Verifier(Protocol):
    name: str

    def verify(self, before_jpeg: bytes, after_jpeg: bytes, region: Region | None) -> Verdict:
        """Compare the region of the before-photo with the after-photo. CPU-bound; the hub
        calls it in a worker thread, never in the writer or the network loop."""
        ...


class NoVerifier:
    """The honest default: no photo comparison is installed, so a person decides."""

    name = "none"

    def verify(self, before_jpeg: bytes, after_jpeg: bytes, region: Region | None) -> Verdict:
        return Verdict(Outcome.UNCERTAIN, 0.0, "no photo verifier is configured", self.name)


@dataclass(frozen=True)
class ClosureStep:
    """What the engine does with a verdict."""

    kind: str  # "close" | "send_back" | "review" | "note"
    detail: str


def decide_on_verdict(state: str, verdict: Verdict, min_confidence: float) -> ClosureStep:
    confident = verdict.confidence >= min_confidence
    what = f"{verdict.outcome} ({verdict.confidence:.2f}) by {verdict.verifier or 'verifier'}"
    if verdict.detail:
        what += f": {verdict.detail}"
    if verdict.outcome is Outcome.FIXED and confident:
        return ClosureStep("close", f"after-photo verified {what}")
    if verdict.outcome is Outcome.NOT_FIXED and confident:
        if state == "resolved":
            return ClosureStep("send_back", f"after-photo shows the problem remains: {what}")
        return ClosureStep("note", f"after-photo shows the problem remains: {what}")
    return ClosureStep("review", f"verification needs an operator: {what}")


def sensor_close_due(cleared_at: datetime | None, now: datetime, hold: timedelta) -> bool:
    return cleared_at is not None and now - cleared_at >= hold
