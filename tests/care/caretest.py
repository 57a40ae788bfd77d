"""Helpers of the elderly-care tests (a module name of its own, so importing it never
picks up another directory's conftest): a hub with a care registry whose contacts use the
real notification peers of tests/notify/peers.py, and an agent config for a simulated
water meter with short tiers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "hub"))
sys.path.insert(0, str(HERE.parent / "notify"))

from hubtest import EXAMPLES, make_config  # noqa: E402
from peers import HttpSink, SmtpSink  # noqa: E402

from hub.config import build_setup  # noqa: E402

ROOT = HERE.parents[1]
MAPS = ROOT / "firmware_configs" / "register_maps"
AGENT = "care-agent-1"
METER = "wm-care-101"
FAMILY = "wang.family@example.org"
DOCTOR_PHONE = "+8613800000303"

CARE = {
    "contacts": {
        "wang-family": {"name": "王女士 (daughter) / Ms Wang", "role": "family",
                        "reach": [{"channel": "email", "address": FAMILY}]},
        "grid-li": {"name": "李明 (grid worker) / Li Ming", "role": "grid_worker",
                    "reach": [{"channel": "wecom", "address": "grid-g01"}]},
        "dr-zhao": {"name": "赵医生 / Dr Zhao", "role": "community_doctor",
                    "reach": [{"channel": "sms", "address": DOCTOR_PHONE}]},
    },
    "residents": [{"agent": AGENT, "source": METER, "ref": "1-101",
                   "tiers": {1: ["wang-family"], 2: ["grid-li"], 3: ["dr-zhao"]}}],
}


def secret(tmp: Path, name: str, text: str) -> str:
    path = tmp / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def care_setup(tmp: Path, smtp: SmtpSink, http: HttpSink, *, auto_accept: bool = False):
    """The example routing (its contacts left out: the care registry is what is tested),
    notify: with email, a WeCom robot and the SMS gateway, and care.yaml. Care cases wait
    for an operator (auto_accept: false) and close as soon as their source clears."""
    table = yaml.safe_load((EXAMPLES / "routing.yaml").read_text())
    table.pop("contacts", None)
    for shifts in table.get("duty", {}).values():
        for shift in shifts:
            shift.pop("contacts", None)
    (tmp / "routing-care.yaml").write_text(yaml.safe_dump(table, allow_unicode=True))
    (tmp / "care.yaml").write_text(yaml.safe_dump(CARE, allow_unicode=True))
    base = http.base
    notify: dict[str, Any] = {
        "retry": {"max_attempts": 3, "initial_s": 60, "max_s": 600, "jitter_s": 0},
        "poll_s": 0.05,
        "email": {"host": "127.0.0.1", "port": smtp.port, "security": "starttls",
                  "username": smtp.user, "password_file": secret(tmp, "smtp", smtp.password),
                  "sender": "CityOps <cityops@example.org>", "ca_file": str(smtp.ca_file),
                  "timeout_s": 5},
        "wecom": {"grid-g01": {"url_file": secret(
            tmp, "wecom-url", f"{base}/cgi-bin/webhook/send?key={http.wecom_key}")}},
        "sms": {"url": f"{base}/sms/send", "headers": {"Authorization": "Bearer {token}"},
                "token_file": secret(tmp, "sms-token", http.sms_token),
                "body": '{"to": "{phone}", "text": "{text}", "ref": "{delivery_id}"}',
                "success_json": {"code": 0}},
    }
    cfg = make_config(tmp, routing=str(tmp / "routing-care.yaml"), notify=notify,
                      care=str(tmp / "care.yaml"),
                      screening={"rules": {"elderly_care": {
                          "merge_scope": "source", "auto_accept": auto_accept,
                          "clear_hold_s": 0}}})
    return build_setup(cfg)


def agent_config_file(tmp: Path, broker_port: int, meter_port: int, username: str,
                      password: str) -> Path:
    """A water meter watched for no use: the alarm after 18 s without use, tier 2 half a
    minute later, tier 3 a minute after opening (on the agent's fake clock)."""
    (tmp / "credentials.yaml").write_text(f"username: {username}\npassword: {password}\n")
    config = {
        "agent": {"id": AGENT, "grid_id": "g-01", "data_dir": str(tmp / "agent-data"),
                  "location": {"lat": 31.2052, "lon": 121.4051, "place": "Building 1, flat 101"}},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "protocol": "5",
                 "credentials_file": str(tmp / "credentials.yaml")},
        "outbox": {"ack_timeout_s": 10},
        "telemetry": {"interval_s": 5},
        "register_maps": {"water_meter": str(MAPS / "water_meter.yaml")},
        "devices": [{
            "id": METER, "model": "water_meter", "unit_id": 1,
            "tcp": {"host": "127.0.0.1", "port": meter_port}, "poll_period_s": 0.05,
            "rules": {"water_no_use": {"hours": 0.005, "resident": "1-101", "tiers": [
                {"notify": "family", "after_min": 0},
                {"notify": "grid_worker", "after_min": 0.5},
                {"notify": "community_doctor", "after_min": 1.0}]}},
        }],
    }
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


