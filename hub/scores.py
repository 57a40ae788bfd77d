"""Grid evaluation: monthly figures per grid and per department. Pure.

The cases of a month are those *accepted* in it (district local time). For each group:

``cases``               accepted cases
``closed``              of them, closed by now
``closure_rate``        closed / cases
``on_time_rate``        resolved by the deadline / cases whose deadline has passed or
                        that were resolved (a case still open past its deadline is late)
``auto_closure_share``  closed automatically (sensor clear or verified photo) / closed
``reopen_rate``         cases reopened at least once / cases
``mean_hours_to_close`` and ``p90_hours_to_close``  accepted → closed
``satisfaction``        mean of recorded scores (1-5) and how many were recorded
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .store.repo import CaseRow

__all__ = ["Score", "month_bounds", "score_cases", "to_csv"]


@dataclass
class Score:
    month: str
    group_by: str
    key: str
    cases: int
    closed: int
    closure_rate: float | None
    on_time_rate: float | None
    auto_closure_share: float | None
    reopen_rate: float | None
    mean_hours_to_close: float | None
    p90_hours_to_close: float | None
    satisfaction: float | None
    satisfaction_count: int


def month_bounds(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC [start, end) of a month like ``2026-07`` in the district's time zone."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=zone)
    except ValueError:
        raise ValueError(f"month {month!r} is not YYYY-MM") from None
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _ratio(n: int, d: int) -> float | None:
    return None if d == 0 else round(n / d, 4)


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)], 3)  # nearest rank


def _group(month: str, by: str, key: str, cases: list[CaseRow], now: datetime) -> Score:
    closed = [c for c in cases if c.state == "closed" and c.closed_at]
    judged = on_time = 0
    for c in cases:
        if c.deadline_at is None:
            continue
        done = c.resolved_at or c.closed_at
        if done is not None:
            judged += 1
            on_time += done <= c.deadline_at
        elif now > c.deadline_at:
            judged += 1
    auto = sum(1 for c in closed if (c.closed_by or "").startswith("auto"))
    hours = [(c.closed_at - c.accepted_at).total_seconds() / 3600 for c in closed if c.accepted_at]
    sat = [c.satisfaction for c in cases if c.satisfaction is not None]
    return Score(
        month=month, group_by=by, key=key, cases=len(cases), closed=len(closed),
        closure_rate=_ratio(len(closed), len(cases)),
        on_time_rate=_ratio(on_time, judged),
        auto_closure_share=_ratio(auto, len(closed)),
        reopen_rate=_ratio(sum(1 for c in cases if c.reopen_count > 0), len(cases)),
        mean_hours_to_close=round(sum(hours) / len(hours), 3) if hours else None,
        p90_hours_to_close=_p90(hours),
        satisfaction=round(sum(sat) / len(sat), 3) if sat else None,
        satisfaction_count=len(sat),
    )


def score_cases(month: str, cases: Iterable[CaseRow], now: datetime,
                by: str = "grid") -> list[Score]:
    """Scores per ``grid`` or ``department`` (plus an ``all`` row), sorted by key."""
    if by not in ("grid", "department"):
        raise ValueError("group by 'grid' or 'department'")
    groups: dict[str, list[CaseRow]] = {}
    every: list[CaseRow] = []
    for c in cases:
        if c.accepted_at is None:
            continue
        key = (c.grid_id if by == "grid" else c.department) or "(none)"
        groups.setdefault(key, []).append(c)
        every.append(c)
    out = [_group(month, by, k, v, now) for k, v in sorted(groups.items())]
    out.append(_group(month, by, "all", every, now))
    return out


def to_csv(scores: list[Score]) -> str:
    buf = io.StringIO()
    fields = list(asdict(scores[0]).keys()) if scores else list(Score.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for s in scores:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(s).items()})
    return buf.getvalue()
