"""The outbox's pure parts: retries and settling, the idempotency key, who is told, the
contacts' checks against hub.yaml, the webhook signature a receiver verifies, templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hubtest import EXAMPLES
from notifytest import write_routing

from hub.geo import load_grids
from hub.notify.audience import case_audience
from hub.notify.channels.sms import SmsChannel
from hub.notify.channels.webhook import sign, verify
from hub.notify.model import (
    Message,
    PermanentError,
    Recipient,
    RetryPolicy,
    TransientError,
    retry_delay,
    settle,
)
from hub.notify.outbox import Outbox
from hub.notify.settings import NotifyConfig, SmsGateway
from hub.routing import load_routing, parse_routing
from hub.store.sqlite import SqliteRepository
from protocol.errors import ConfigError
from protocol.taxonomy import taxonomy

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def test_retries_back_off_and_end_dead_with_the_reason():
    policy = RetryPolicy(max_attempts=3, initial_s=10, max_s=100, jitter_s=5)
    waits = [retry_delay(n, policy) for n in (1, 2, 3, 4, 5)]
    assert 10 <= waits[0] <= 15 and 20 <= waits[1] <= 25 and 40 <= waits[2] <= 45
    assert waits[4] == 100  # capped
    s = settle(1, TransientError("HTTP 503: busy"), policy, NOW)
    assert s.state == "failed" and timedelta(seconds=10) <= s.next_attempt_at - NOW <= timedelta(seconds=15)
    assert settle(1, TransientError("429", retry_after_s=80), policy, NOW).next_attempt_at == NOW + timedelta(seconds=80)
    dead = settle(3, TransientError("HTTP 503: busy"), policy, NOW)
    assert dead.state == "dead" and dead.last_error.startswith("gave up after 3 attempts")
    bad = settle(1, PermanentError("SMTP 550: no such mailbox"), policy, NOW)
    assert bad.state == "dead" and "550" in bad.last_error and bad.next_attempt_at is None
    assert settle(2, None, policy, NOW).sent_at == NOW


def _outbox(tmp_path, **notify):
    grids = load_grids(EXAMPLES / "grids.geojson")
    config = NotifyConfig.model_validate({"email": {"host": "mail", "sender": "a@b.org"}, **notify})
    table = load_routing(write_routing(tmp_path, {"departments": {"drainage": [
        {"channel": "email", "address": "d@example.org"}]}}), taxonomy(), grids, config.endpoints())
    return Outbox(table, config), table


def test_one_contact_never_gets_one_event_twice(tmp_path):
    outbox, _ = _outbox(tmp_path)
    repo = SqliteRepository.memory()
    msg = Message("s", "t", {"kind": "x"})
    who = [Recipient("email", "d@example.org"), Recipient("email", "d@example.org")]
    with repo.transaction():
        assert outbox.enqueue(repo, event_key="case-1/dispatched/n1", kind="dispatched",
                              message=msg, recipients=who, now=NOW, case_id=1) == 1
    with repo.transaction():  # the same event again (a replay, a second call): nothing new
        assert outbox.enqueue(repo, event_key="case-1/dispatched/n1", kind="dispatched",
                              message=msg, recipients=who[:1], now=NOW, case_id=1) == 0
    # A channel hub.yaml does not set up is kept, dead, with the reason (never dropped).
    with repo.transaction():
        outbox.enqueue(repo, event_key="care/ev-1/tier-2", kind="care", message=msg,
                       recipients=[Recipient("sms", "+8613800000002")], now=NOW, case_id=1)
    rows = repo.deliveries_for_case(1)
    assert [(r.channel, r.state) for r in rows] == [("email", "queued"), ("sms", "dead")]
    assert "not set up under notify" in rows[1].last_error
    claimed = repo.claim_deliveries(NOW, 10)
    assert [(r.id, r.state, r.attempts) for r in claimed] == [(1, "sending", 1)]
    assert repo.requeue_sending(NOW) == 1 and repo.get_delivery(1).state == "queued"


def test_who_is_told_of_what(tmp_path):
    grids = load_grids(EXAMPLES / "grids.geojson")
    table = load_routing(write_routing(tmp_path), taxonomy(), grids)
    facts = dict(department="drainage", grid_id="g-05", town="Jiuting", district=None, at=NOW)
    assert [r.channel for r in case_audience(table, "dispatched", escalation_level=0, **facts)] == [
        "email", "webhook", "wecom"]
    assert [r.address for r in case_audience(table, "escalated", escalation_level=1, **facts)] == [
        "jiuting-leads", "+8613800000001"]
    assert case_audience(table, "escalated", escalation_level=3, **facts) == []  # no city leads here
    assert [r.channel for r in case_audience(table, "queued", escalation_level=0, **facts)] == ["feishu"]
    assert case_audience(table, "note", escalation_level=0, **facts) == []


def test_contacts_are_checked_against_hub_yaml_with_file_line_col(tmp_path):
    grids = load_grids(EXAMPLES / "grids.geojson")
    text = write_routing(tmp_path).read_text()
    endpoints = NotifyConfig.model_validate(
        {"email": {"host": "mail", "sender": "a@b.org"}, "webhooks": {"other": {
            "url": "https://x.example/h", "secret_file": "k"}}}).endpoints()
    with pytest.raises(ConfigError) as err:
        parse_routing(text, "routing.yaml", taxonomy(), grids, endpoints)
    msg = str(err.value)
    assert "routing.yaml:" in msg and "no webhook named 'drainage-system'" in msg
    assert "channel wecom is not set up in hub.yaml: add notify.wecom" in msg
    bad = text.replace("drainage@example.org", "not-an-address")
    with pytest.raises(ConfigError, match="not an email address"):
        parse_routing(bad, "routing.yaml", taxonomy(), grids)


def test_a_receiver_refuses_a_tampered_or_replayed_webhook():
    body = b'{"delivery_id":"abc"}'
    sig = sign("k", "1000", body)
    assert verify("k", "1000", body, sig, now=1100)
    assert not verify("k", "1000", body + b" ", sig, now=1100)  # body changed
    assert not verify("k", "1000", body, sig, now=1000 + 301)  # outside the replay window
    assert not verify("other", "1000", body, sig, now=1100)


def test_the_sms_template_escapes_what_it_fills_in(tmp_path):
    token = tmp_path / "t"
    token.write_text("tok")
    gw = SmsGateway(url="https://sms.example/send?to={phone}", headers={"X-Key": "{token}"},
                    token_file=token, body='{"to": "{phone}", "text": "{text}"}')
    url, headers, body = SmsChannel(gw, None).request(  # type: ignore[arg-type]
        Message("s", 'a "quoted"\nline & more'), "+86138", "d1")
    assert url == "https://sms.example/send?to=%2B86138" and headers["X-Key"] == "tok"
    assert json.loads(body) == {"to": "+86138", "text": 'a "quoted"\nline & more'}
