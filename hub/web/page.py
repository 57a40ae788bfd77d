"""The status page: server-rendered HTML, no external assets, every value escaped."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

__all__ = ["render_status"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;
text-align:left;white-space:nowrap}th{background:#f3f3f3}
.online{color:#0a0}.offline{color:#b00}.stale{color:#c70}.unknown{color:#888}
.counts span{display:inline-block;margin-right:1.2em}.muted{color:#777}
.state-rejected,.state-closed,.state-merged{color:#777}.state-escalated{color:#b00;font-weight:600}
"""


def _e(value: Any) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    return escape(str(value))


def _t(value: str | None, now: datetime) -> str:
    if not value:
        return _e(None)
    when = datetime.fromisoformat(value)
    secs = int((now - when).total_seconds())
    if abs(secs) < 120:
        rel = f"{secs} s ago" if secs >= 0 else f"in {-secs} s"
    elif abs(secs) < 7200:
        rel = f"{secs // 60} min ago" if secs >= 0 else f"in {-secs // 60} min"
    else:
        rel = f"{secs // 3600} h ago" if secs >= 0 else f"in {-secs // 3600} h"
    return f'<span title="{escape(value)}">{escape(rel)}</span>'


def render_status(*, agents: list[dict[str, Any]], cases: list[dict[str, Any]],
                  counts: dict[str, Any], now: datetime) -> str:
    rows_a = "".join(
        f"<tr><td>{_e(a['agent_id'])}</td>"
        f"<td class=\"{escape(a['shown_state'])}\">{_e(a['shown_state'])}</td>"
        f"<td>{_t(a['last_seen'], now)}</td><td>{_e(a['outbox_depth'])}</td>"
        f"<td>{_e(a['version'])}</td><td>{_e(a['grid_id'])}</td>"
        f"<td>{_e(a['seq_upto'])}</td><td>{_e(a['missing_seqs'] or None)}</td></tr>"
        for a in agents
    ) or '<tr><td colspan="8" class="muted">no agents yet</td></tr>'
    rows_c = "".join(
        f"<tr><td><a href=\"/api/v1/cases/{c['id']}\">{c['id']}</a></td>"
        f"<td class=\"state-{escape(c['state'])}\">{_e(c['state'])}</td>"
        f"<td>{_e(c['subcategory'])}</td><td>{_e(c['grid_id'])}</td>"
        f"<td>{_e(c['department'])}</td><td>{_e(c['handler'])}</td>"
        f"<td>{_t(c['deadline_at'], now)}</td><td>{_e(c['event_count'])}</td>"
        f"<td>{_e('; '.join(r[1] for r in c['screen_reasons'] or []) or c['queue_reason'] or c['review_reason'])}</td></tr>"
        for c in cases
    ) or '<tr><td colspan="9" class="muted">no cases yet</td></tr>'
    ingest = counts.get("ingest", {})
    figures = [
        ("agents online", f"{counts.get('agents_online', 0)} / {counts.get('agents', 0)}"),
        ("events stored", counts.get("messages_stored", 0)),
        ("open cases", counts.get("cases_open", 0)),
        ("closed", counts.get("cases_closed", 0)),
        ("rejected", counts.get("cases_rejected", 0)),
        ("dead letters", counts.get("dead_letters", 0)),
        ("duplicates (this run)", ingest.get("duplicates", 0)),
        ("backlog", counts.get("backlog", 0)),
    ]
    fig = "".join(f"<span>{escape(k)}: <b>{_e(v)}</b></span>" for k, v in figures)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>cityops hub</title><style>{_CSS}</style></head><body>
<h1>cityops hub</h1><div class="muted">{escape(now.isoformat(timespec="seconds"))} ·
JSON: <a href="/api/v1/agents">agents</a> · <a href="/api/v1/cases">cases</a> ·
<a href="/api/v1/dead-letters">dead letters</a> · <a href="/api/v1/stats">stats</a></div>
<p class="counts">{fig}</p>
<h2>Agents</h2><table><tr><th>agent</th><th>state</th><th>last seen</th><th>outbox</th>
<th>version</th><th>grid</th><th>acked up to</th><th>missing</th></tr>{rows_a}</table>
<h2>Cases</h2><table><tr><th>#</th><th>state</th><th>category</th><th>grid</th>
<th>department</th><th>handler</th><th>deadline</th><th>events</th><th>why</th></tr>{rows_c}</table>
</body></html>"""
