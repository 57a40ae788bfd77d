from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubtest import EXAMPLES, T0, make_config  # noqa: E402
from peers import HttpSink, SmtpSink  # noqa: E402

from hub.app import Hub  # noqa: E402
from hub.config import build_setup  # noqa: E402
from protocol.clock import FakeClock  # noqa: E402

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


def notify_setup(tmp: Path, smtp: SmtpSink, http: HttpSink, **over: Any):
    cfg = make_config(tmp, routing=str(write_routing(tmp)),
                      notify=notify_config(tmp, smtp, http, **over))
    return build_setup(cfg)


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def smtp(tmp_path):
    sink = SmtpSink(tmp_path).start()
    yield sink
    sink.stop()


@pytest.fixture
async def http():
    sink = await HttpSink().start()
    yield sink
    if sink.hold is not None:
        sink.hold.set()
    await sink.stop()


@pytest.fixture
async def hub(tmp_path, clock, smtp, http):
    h = Hub(notify_setup(tmp_path, smtp, http), clock=clock, run_scheduler=False)
    await h.start()
    yield h
    await h.stop()
