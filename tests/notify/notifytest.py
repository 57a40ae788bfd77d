"""Helpers of the notification tests (a module name of its own, so importing it never
picks up another test directory's conftest): the routing contacts, the hub's notify:
section pointed at the real peers of peers.py, a setup with both, and a dispatched case
with its deliveries."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "hub"))
sys.path.insert(0, str(HERE))

from hubtest import EXAMPLES, G05, TestAgent, await_for, event, jpeg, make_config  # noqa: E402
from peers import HttpSink, SmtpSink  # noqa: E402

from hub.config import build_setup  # noqa: E402

CONTACTS = {
    "departments": {"drainage": [
        {"channel": "email", "address": "drainage@example.org"},
        {"channel": "webhook", "address": "drainage-system"},
        {"channel": "wecom", "address": "drainage-group"},
    ]},
    "operators": [{"channel": "feishu", "address": "operators"}],
    "leads": {"town": {"Jiuting": [{"channel": "dingtalk", "address": "jiuting-leads"},
                                   {"channel": "sms", "address": "+8613800000001"}]}},
}


def secret(tmp: Path, name: str, text: str) -> str:
    path = tmp / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def notify_config(tmp: Path, smtp: SmtpSink, http: HttpSink, **over: Any) -> dict[str, Any]:
    base = http.base
    cfg: dict[str, Any] = {
        "retry": {"max_attempts": 6, "initial_s": 60, "max_s": 600, "jitter_s": 0},
        "poll_s": 0.05,
        "email": {"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
                  "username": smtp.user, "password_file": secret(tmp, "smtp", smtp.password),
                  "sender": "CityOps <cityops@example.org>", "ca_file": str(smtp.ca_file),
                  "timeout_s": 5},
        "webhooks": {"drainage-system": {"url": f"{base}/hook", "timeout_s": 5,
                                         "secret_file": secret(tmp, "wh", http.webhook_secret)}},
        "wecom": {"drainage-group": {"url_file": secret(
            tmp, "wecom-url", f"{base}/cgi-bin/webhook/send?key={http.wecom_key}")}},
        "dingtalk": {"jiuting-leads": {
            "url_file": secret(tmp, "ding-url", f"{base}/robot/send?access_token={http.dingtalk_token}"),
            "secret_file": secret(tmp, "ding-secret", http.dingtalk_secret)}},
        "feishu": {"operators": {
            "url_file": secret(tmp, "fs-url", f"{base}/open-apis/bot/v2/hook/{http.feishu_hook}"),
            "secret_file": secret(tmp, "fs-secret", http.feishu_secret)}},
        "sms": {"url": f"{base}/sms/send", "headers": {"Authorization": "Bearer {token}"},
                "token_file": secret(tmp, "sms-token", http.sms_token),
                "body": '{"to": "{phone}", "text": "{text}", "ref": "{delivery_id}"}',
                "success_json": {"code": 0}},
    }
    cfg.update(over)
    return cfg


def write_routing(tmp: Path, contacts: dict[str, Any] = CONTACTS) -> Path:
    table = yaml.safe_load((EXAMPLES / "routing.yaml").read_text())
    table["contacts"] = contacts
    for shifts in table.get("duty", {}).values():
        for shift in shifts:
            shift.pop("contacts", None)
    path = tmp / "routing-notify.yaml"
    path.write_text(yaml.safe_dump(table, allow_unicode=True))
    return path


def notify_setup(tmp: Path, smtp: SmtpSink, http: HttpSink, *,
                 contacts: dict[str, Any] = CONTACTS, **over: Any):
    cfg = make_config(tmp, routing=str(write_routing(tmp, contacts)),
                      notify=notify_config(tmp, smtp, http, **over))
    return build_setup(cfg)


async def rows(hub, case_id=None):
    if case_id is None:
        return await hub.read(lambda r: r.list_deliveries(limit=1000))
    return await hub.read(lambda r: r.deliveries_for_case(case_id))


async def dispatched_case(hub, seq: int = 1, where=G05) -> int:
    """An event at G05 (Jiuting) → a case dispatched to drainage (the example routing)."""
    agent = await asyncio.to_thread(TestAgent, hub.broker, f"agent-{seq}")
    try:
        agent.send(event(agent=f"agent-{seq}", seq=1, event_id=f"ev-{seq}", where=where,
                         snapshot=jpeg(seq)))
        await await_for(lambda: agent.acked(1), what="the hub's ack")
    finally:
        agent.close()
    cases, _ = await hub.read(lambda r: r.search_cases(_filter(), limit=100, offset=0))
    case = max(cases, key=lambda c: c.id)
    assert case.state == "dispatched" and case.department == "drainage"
    return case.id


def _filter():
    from hub.store.repo import CaseFilter

    return CaseFilter()


async def settled(hub, case_id, n, states=("sent", "dead")):
    async def check():
        got = await rows(hub, case_id)
        return got if len(got) == n and all(d.state in states for d in got) else None
    return await await_for(check, timeout=20, what=f"{n} deliveries settled")
