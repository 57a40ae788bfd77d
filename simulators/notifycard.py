"""The scorecard's notifications and care figures, and the "notifications received" block.

Pure: the deliveries and care counts the hub stored (read by :mod:`simulators.hubaudit`)
and the sinks' report (:meth:`simulators.sinks.Sinks.report`) in, plain summaries and
text lines out.

* ``notifications`` — ``queued``: deliveries the hub enqueued (one per event, contact and
  channel); ``delivered``: the channel took it (``sent``); ``failed``: given up (``dead``,
  each with its reason under ``dead``); ``pending``: still queued, being sent or waiting
  to retry. At the end of a run ``delivered == queued`` and ``pending == 0`` unless a
  channel was made to fail.
* ``care`` — ``tier_notifications``: tiers of elderly-care alarms that told someone;
  ``escalations_after_ack``: tiers an agent reached after the hub acknowledged the alarm
  (0 when acknowledgements stop escalation); ``alarms`` and ``acknowledged``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .hubaudit import StoredDelivery

__all__ = ["care_figures", "format_notifications", "notification_counts"]

PENDING = frozenset({"queued", "sending", "failed"})
MAX_DEAD_ROWS = 50
SHOWN_MESSAGES = 8


def notification_counts(deliveries: list[StoredDelivery]) -> dict[str, Any]:
    states = Counter(d.state for d in deliveries)
    dead = [d for d in deliveries if d.state == "dead"]
    return {
        "queued": len(deliveries),
        "delivered": states["sent"],
        "failed": states["dead"],
        "pending": sum(n for s, n in states.items() if s in PENDING),
        "by_channel": dict(sorted(Counter(d.channel for d in deliveries).items())),
        "dead": [{"kind": d.kind, "channel": d.channel, "target": d.target, "attempts": d.attempts,
                  "reason": d.last_error} for d in dead[:MAX_DEAD_ROWS]],
    }


def care_figures(care: dict[str, int]) -> dict[str, int]:
    return {k: int(care.get(k, 0)) for k in ("tier_notifications", "escalations_after_ack", "alarms",
                                              "acknowledged")}


def _rank(subject: str) -> int:
    """Care alarms and plan notices first: what a person watching the demo looks for."""
    if "care alarm" in subject:
        return 0
    if "] plan " in subject:
        return 1
    return 2


def format_notifications(summary: dict[str, Any]) -> list[str]:
    """The scorecard's lines for people (none when the run had no notifications)."""
    lines = []
    n = summary.get("notifications")
    care = summary.get("care")
    if n is not None and (n["queued"] or (care and care["alarms"])):
        line = (f"  notify   queued {n['queued']}, delivered {n['delivered']}, failed {n['failed']}, "
                f"pending {n['pending']}")
        if care:
            line += (f"; care tiers told {care['tier_notifications']}, escalations after "
                     f"acknowledgement {care['escalations_after_ack']}")
        lines.append(line)
        for d in n["dead"][:5]:
            lines.append(f"    dead   {d['kind']} by {d['channel']} to {d['target']}: {d['reason']}")
        if len(n["dead"]) > 5:
            lines.append(f"    ... and {n['failed'] - 5} more dead")
    got = summary.get("notifications_received")
    if got is None:
        return lines
    by = ", ".join(f"{ch} {k}" for ch, k in got["by_channel"].items())
    failing = f" ({got['failing_channel']} made to refuse)" if got["failing_channel"] else ""
    lines.append(f"  notifications received: {got['received']}" + (f" ({by})" if by else "")
                 + f", refused {len(got['refused'])}{failing}")
    shown = sorted(got["messages"], key=lambda m: _rank(m["subject"]))[:SHOWN_MESSAGES]
    for m in shown:
        lines.append(f"    {m['channel']:<8} {m['to']:<34} {m['subject'][:90]}")
    if got["received"] > len(shown):
        lines.append(f"    ... and {got['received'] - len(shown)} more (--json lists them all)")
    return lines
