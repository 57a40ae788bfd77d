"""Water level above a threshold (with hysteresis) or rising fast: rivers, underpasses."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.rules import LevelConfig
from protocol.messages import EventKind

from .base import Decision, SingleSignalRule, State

__all__ = ["LevelRule", "rate_per_hour"]

_MAX_WINDOW_SAMPLES = 64


def rate_per_hour(window: list[list[float]], min_span_s: float) -> float | None:
    """Rise per hour from the oldest to the newest sample of the window, or None when the
    samples span less than ``min_span_s`` (two close readings say little)."""
    if len(window) < 2:
        return None
    (t0, v0), (t1, v1) = window[0], window[-1]
    if t1 - t0 < min_span_s:
        return None
    return (v1 - v0) / (t1 - t0) * 3600.0


@dataclass(frozen=True)
class LevelRule(SingleSignalRule):
    """Opens at ``level >= high`` or, with ``rate_of_rise``, when the level rose faster
    than that over ``rate_window_min``. Updates when the level moved ``update_delta``
    since the last message or the trigger changed; ends once the level is below
    ``clear_below`` and no longer rising fast (hysteresis: no flapping around ``high``).
    """

    config: LevelConfig
    name: str = "level"
    category: str = "flood"

    @property
    def subcategory(self) -> str:
        return self.config.subcategory

    def initial(self) -> State:
        return {"window": [], "active": False, "trigger": None, "sent": None, "peak": None}

    def advance(self, s: State, v: float, t: float) -> tuple[State, Decision | None]:
        cfg = self.config
        window_s = cfg.rate_window_min * 60
        window = [p for p in s["window"] if t - p[0] <= window_s]
        if len(window) >= 2 and t - window[-2][0] < window_s / _MAX_WINDOW_SAMPLES:
            window[-1] = [t, v]  # thin out: the window keeps at most ~2 x 64 samples
        else:
            window.append([t, v])
        s["window"] = window
        rate = rate_per_hour(window, window_s / 2) if cfg.rate_of_rise else None
        rising = rate is not None and rate >= (cfg.rate_of_rise or 0)
        trigger = "level" if v >= cfg.high else ("rate" if rising else None)
        if not s["active"]:
            if trigger is None:
                return s, None
            s.update(active=True, trigger=trigger, sent=v, peak=v)
            return s, Decision(EventKind.NEW, cfg.signal, v, self._attrs(v, rate, trigger, v))
        s["peak"] = max(s["peak"], v)
        if v < cfg.clear_below and not rising:
            peak = s["peak"]
            return {**self.initial(), "window": window}, Decision(
                EventKind.END, cfg.signal, v, {**self._attrs(v, rate, None, peak), "reason": "cleared"})
        trigger = trigger or s["trigger"]  # between clear_below and high: still the old alarm
        if abs(v - s["sent"]) >= cfg.update_delta or trigger != s["trigger"]:
            s.update(trigger=trigger, sent=v)
            return s, Decision(EventKind.UPDATE, cfg.signal, v, self._attrs(v, rate, trigger, s["peak"]))
        return s, None

    def _attrs(self, v: float, rate: float | None, trigger: str | None, peak: float) -> dict:
        return {
            "level": round(v, 4), "rate_per_hour": None if rate is None else round(rate, 4),
            "trigger": trigger, "high": self.config.high, "clear_below": self.config.clear_below,
            "peak": round(peak, 4),
        }
