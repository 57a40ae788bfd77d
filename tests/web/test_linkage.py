"""Linked incidents (POST /api/v1/incidents): token and role, every field validated with
an error that names it, idempotency on (source_system, external_id), each source_system
reserved for its partner, the same screening and dispatch as an agent's event, and the
optional HMAC signature."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from hubtest import G01, OUTSIDE, T0, make_setup
from webtest import Client, make_token, running_hub

from hub.cli import main
from hub.linkage import sign
from protocol.errors import ConfigError

URL = "/api/v1/incidents"


def incident(**over):
    body = {"source_system": "police-110", "external_id": "P20260701-0042", "type": "police",
            "occurred_at": (T0 - timedelta(minutes=5)).isoformat(),
            "location": {"lat": G01[0], "lon": G01[1], "address": "Xinqiao Rd 12"},
            "description": "two cars collided, one lane blocked"}
    body.update(over)
    return body


# The police gateway files for two systems; other partners' tokens file under their name.
PARTNERS = {"police-gateway": {"systems": ["police-110", "fire-119"]}}


@pytest.fixture
async def hub(tmp_path, clock):
    async with running_hub(tmp_path, clock, linkage={"partners": PARTNERS}) as h:
        yield h


@pytest.fixture
async def partner(hub):
    return await make_token(hub, "linkage", name="police-gateway")


async def post(client, body, token, **kw):
    data = body if isinstance(body, (bytes, str)) or hasattr(body, "__aiter__") else json.dumps(body)
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return await client.post(URL, data=data, token=token, headers=headers, **kw)


async def test_an_incident_becomes_a_dispatched_case(hub, client, partner):
    r = await post(client, incident(), partner)
    assert r.status == 201, r.text
    out = r.json()
    inc, case = out["incident"], out["case"]
    assert inc["duplicate"] is False and inc["accepted"] is True
    assert inc["subcategory"] == "linkage.police_110" and inc["case_id"] == case["id"]
    assert case["state"] == "dispatched" and case["department"] == "public_security"
    assert case["deadline_at"] is not None and case["grid_id"] == "g-01"
    assert case["place"] == "Xinqiao Rd 12"
    assert case["origin"]["agent_id"] == "linkage"
    assert case["origin"]["source"] == "police-110.P20260701-0042"
    life = await hub.read(lambda repo: repo.get_lifecycle("linkage", inc["event_id"]))
    assert life.case_id == case["id"] and life.started_at == T0 - timedelta(minutes=5)
    audit = await hub.read(lambda repo: repo.audit_for_case(case["id"]))
    assert any(a.actor == "token:police-gateway" and "two cars" in a.detail for a in audit)


async def test_the_same_incident_twice_is_one_case(hub, client, partner):
    first = await post(client, incident(), partner)
    # Same content, other key order and whitespace: a harmless re-post.
    again = await post(client, json.dumps(incident(), indent=2, sort_keys=True), partner)
    assert first.status == 201 and again.status == 200, again.text
    assert again.json()["incident"]["duplicate"] is True
    assert again.json()["case"]["id"] == first.json()["case"]["id"]
    counts = await hub.read(lambda repo: repo.counts())
    assert counts["cases_total"] == 1
    changed = await post(client, incident(description="now three cars"), partner)
    assert changed.status == 409 and changed.json()["code"] == "external_id_reused"
    assert "new external_id" in changed.json()["detail"]
    other = await post(client, incident(external_id="P20260701-0043"), partner)
    assert other.status == 201 and other.json()["case"]["id"] != first.json()["case"]["id"]
    # The key is per source system: the fire service may use the same number.
    fire = await post(client, incident(source_system="fire-119", type="fire"), partner)
    assert fire.status == 201 and fire.json()["case"]["department"] == "fire_brigade"


async def test_screening_applies_outside_the_service_area(hub, client, partner):
    body = incident(location={"lat": OUTSIDE[0], "lon": OUTSIDE[1]})
    r = await post(client, body, partner)
    assert r.status == 201, r.text
    inc = r.json()["incident"]
    assert inc["accepted"] is False and r.json()["case"]["state"] == "rejected"
    codes = {x["code"] for x in inc["screen_reasons"]}
    assert "outside_service_area" in codes
    assert any("outside the service area" in x["detail"] for x in inc["screen_reasons"])


async def test_address_and_grid_place_the_incident_in_that_grid(hub, client, partner):
    body = incident(location={"address": "Jiuting market, north gate", "grid_id": "g-05"})
    r = await post(client, body, partner)
    assert r.status == 201, r.text
    case = r.json()["case"]
    assert case["grid_id"] == "g-05" and case["place"] == "Jiuting market, north gate"
    assert hub.setup.grids.get("g-05").contains(case["lat"], case["lon"])


async def test_auth_no_token_wrong_role_revoked(hub, client, partner):
    r = await post(client, incident(), None)
    assert r.status == 401 and r.content_type == "application/problem+json"
    r = await post(client, incident(), "cot_not-a-real-token")
    assert r.status == 401 and r.json()["code"] == "bad_token"
    for role in ("operator", "open311", "reporter", "admin"):
        token = await make_token(hub, role, name=f"{role}-x")
        r = await post(client, incident(), token)
        assert r.status == 403 and r.json()["code"] == "forbidden", (role, r.text)
    token = await make_token(hub, "handler", "drainage", name="drain-x")
    assert (await post(client, incident(), token)).status == 403
    await hub.write(lambda repo: repo.revoke_api_token(
        next(t.id for t in repo.list_api_tokens() if t.name == "police-gateway"), hub.clock.now()))
    assert (await post(client, incident(), partner)).status == 401
    assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 0


BAD_FIELDS = [
    ({"source_system": "police/110"}, "source_system"),
    ({"source_system": ""}, "source_system"),
    ({"external_id": ""}, "external_id"),
    ({"external_id": "x" * 129}, "external_id"),
    ({"external_id": "has space"}, "external_id"),
    ({"type": "no such type"}, "type"),
    ({"type": "earthquake"}, "type"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"occurred_at": "2026-07-01T08:00:00"}, "occurred_at"),  # no timezone
    ({"occurred_at": (T0 + timedelta(hours=1)).isoformat()}, "occurred_at"),
    ({"occurred_at": (T0 - timedelta(days=5)).isoformat()}, "occurred_at"),
    ({"location": {"lat": 91, "lon": 121.4}}, "location.lat"),
    ({"location": {"lat": 31.2, "lon": "east"}}, "location.lon"),
    ({"location": {"lat": 31.2}}, "location"),
    ({"location": {"address": "somewhere"}}, "location"),
    ({"location": {"address": "Main St 1", "grid_id": "g-99"}}, "location.grid_id"),
    ({"location": {"address": "x" * 201, "grid_id": "g-01"}}, "location.address"),
    ({"location": "Xinqiao"}, "location"),
    ({"description": "x" * 2001}, "description"),
    ({"photo_url": "file:///etc/passwd"}, "photo_url"),
    ({"priority": "high"}, "priority"),
]


@pytest.mark.parametrize(("change", "field"), BAD_FIELDS)
async def test_every_field_is_validated(hub, client, partner, change, field):
    r = await post(client, incident(**change), partner)
    assert r.status == 400, r.text
    doc = r.json()
    assert r.content_type == "application/problem+json" and doc["code"] == "invalid_input"
    assert field in doc["errors"], doc
    assert doc["errors"][field] and field in doc["detail"]


async def test_missing_fields_are_named(hub, client, partner):
    r = await post(client, {"source_system": "police-110"}, partner)
    assert r.status == 400
    errors = r.json()["errors"]
    for name in ("external_id", "type", "occurred_at", "location"):
        assert errors[name] == "required"
    assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 0


async def test_malformed_and_oversized_bodies(hub, client, partner):
    r = await post(client, b"{not json", partner)
    assert r.status == 400 and "not valid JSON" in r.json()["errors"]["body"]
    r = await post(client, b"[1, 2]", partner)
    assert r.status == 400 and "JSON object" in r.json()["errors"]["body"]
    r = await client.post(URL, data="source_system=police", token=partner,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 415 and "application/json" in r.json()["detail"]
    big = incident(description="x" * 1000)
    big["padding"] = "y" * 20000
    r = await post(client, big, partner)
    assert r.status == 413 and r.json()["code"] == "too_large" and "16384" in r.json()["detail"]
    assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 0


async def test_photo_url_is_kept_not_fetched(hub, client, partner):
    r = await post(client, incident(photo_url="http://192.0.2.1/photo/1.jpg"), partner)
    assert r.status == 201
    life = await hub.read(lambda repo: repo.get_lifecycle("linkage", r.json()["incident"]["event_id"]))
    assert life.snapshot_sha256 is None
    msgs = await hub.read(lambda repo: repo.conn.execute(
        "SELECT body FROM messages WHERE agent_id = 'linkage'").fetchall())
    assert "http://192.0.2.1/photo/1.jpg" in msgs[0][0]


# -- signatures ------------------------------------------------------------------------------
SECRET = "s3cret-shared-with-the-police-gateway"


@pytest.fixture
async def signed_hub(tmp_path, clock, monkeypatch):
    monkeypatch.setenv("CITYOPS_TEST_POLICE_SECRET", SECRET)
    async with running_hub(tmp_path, clock, linkage={
        "partners": {"police-gateway": {"secret_env": "CITYOPS_TEST_POLICE_SECRET",
                                        "require_signature": True, "systems": ["police-110"]}},
        "types": {"police-110:*": "linkage.police_110", "traffic_accident": "roads.pothole"}}) as h:
        yield h


async def test_signed_posts(signed_hub):
    hub = signed_hub
    client = Client(hub)
    try:
        token = await make_token(hub, "linkage", name="police-gateway")
        body = json.dumps(incident(type="burglary")).encode()
        now = str(int(hub.clock.now().timestamp()))

        async def send(ts, sig, data=body):
            headers = {}
            if ts is not None:
                headers["X-Cityops-Timestamp"] = ts
            if sig is not None:
                headers["X-Cityops-Signature"] = sig
            return await post(client, data, token, headers=headers)

        r = await send(None, None)
        assert r.status == 401 and r.json()["code"] == "bad_signature"
        assert "X-Cityops-Signature" in r.json()["detail"]
        r = await send(now, sign("wrong secret", now, body))
        assert r.status == 401 and "does not match" in r.json()["detail"]
        tampered = body.replace(b"two cars", b"ten cars")
        r = await send(now, sign(SECRET, now, body), tampered)
        assert r.status == 401
        old = str(int(hub.clock.now().timestamp()) - 3600)
        r = await send(old, sign(SECRET, old, body))
        assert r.status == 401 and "300 s" in r.json()["detail"]
        assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 0
        r = await send(now, sign(SECRET, now, body))
        assert r.status == 201, r.text
        assert r.json()["incident"]["subcategory"] == "linkage.police_110"  # police-110:*
        # A replay inside the window is the same incident, not a second case.
        r = await send(now, sign(SECRET, now, body))
        assert r.status == 200 and r.json()["incident"]["duplicate"] is True
        other = json.dumps(incident(source_system="fire-119", type="fire")).encode()
        r = await send(now, sign(SECRET, now, other), other)
        assert r.status == 403 and r.json()["code"] == "forbidden_source_system"
    finally:
        await client.close()


def test_unknown_subcategory_in_the_type_mapping_is_a_config_error(tmp_path):
    from protocol.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        make_setup(tmp_path, web={"linkage": {"types": {"police": "linkage.police_999"}}})
    assert "web.linkage.types.police" in str(info.value)
    assert "unknown subcategory" in str(info.value)


async def test_a_chunked_body_without_length_is_read_whole_and_limited(hub, client, partner):
    async def chunks(data: bytes):
        for i in range(0, len(data), 100):
            yield data[i:i + 100]

    body = json.dumps(incident()).encode()
    r = await post(client, chunks(body), partner)
    assert r.status == 201, r.text
    big = json.dumps(incident(external_id="P-2", description="x" * 2000,
                              photo_url="http://x/" + "y" * 150)).encode() + b" " * 20000
    r = await post(client, chunks(big), partner)
    assert r.status == 413 and r.json()["code"] == "too_large"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")),
                    reason="needs curl and openssl")
async def test_the_documented_shell_signing_works(signed_hub):
    """docs/web.md's openssl + curl example, run as written against the hub (only the
    clock is the hub's fake one, and the URL the test hub's)."""
    hub = signed_hub
    token = await make_token(hub, "linkage", name="police-gateway")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()
    script = doc.split("A partner can sign from a shell")[1].split("```sh\n")[1].split("```")[0]
    script = script.replace("$(date +%s)", str(int(hub.clock.now().timestamp())))
    script = script.replace("https://hub.example", hub.web_url.rstrip("/"))
    out = await asyncio.to_thread(subprocess.run, ["bash", "-c", script], capture_output=True,
                                  text=True, timeout=30,
                                  env={"PATH": os.environ["PATH"], "SECRET": SECRET, "TOKEN": token})
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["incident"]["external_id"] == "P20260701-0042", answer
    assert answer["case"]["state"] == "dispatched"


async def test_racing_posts_of_one_incident_make_one_case(hub, client, partner):
    replies = await asyncio.gather(*(post(client, incident(), partner) for _ in range(6)))
    assert sorted(r.status for r in replies) == [200] * 5 + [201]
    assert len({r.json()["case"]["id"] for r in replies}) == 1
    assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 1


# -- each source_system belongs to one partner -------------------------------------------------

async def test_a_partner_cannot_squat_another_partners_incident_ids(hub, client, partner):
    """The ambulance system's token tries to file under police-110 first, taking the police's
    next incident id; it is refused and the police's own filing goes through (not 409)."""
    other = await make_token(hub, "linkage", name="ambulance-120")
    squat = incident(description="a squatter's version")
    r = await post(client, squat, other)
    assert r.status == 403 and r.content_type == "application/problem+json", r.text
    doc = r.json()
    assert doc["code"] == "forbidden_source_system"
    assert "'police-110' is reserved for another partner" in doc["detail"]
    assert "files under 'ambulance-120'" in doc["detail"]
    assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 0
    r = await post(client, incident(), partner)
    assert r.status == 201, r.text
    assert r.json()["incident"]["duplicate"] is False
    # The ambulance system still files under its own system.
    r = await post(client, incident(source_system="ambulance-120", type="ambulance"), other)
    assert r.status == 201, r.text


async def test_a_token_files_only_under_its_own_systems(hub, client, partner):
    other = await make_token(hub, "linkage", name="ambulance-120")
    # A system nobody reserved is not free for the taking either.
    r = await post(client, incident(source_system="traffic-122", type="police"), other)
    assert r.status == 403 and r.json()["code"] == "forbidden_source_system"
    assert "files under 'ambulance-120', not 'traffic-122'" in r.json()["detail"]
    assert "web.linkage.partners.ambulance-120.systems" in r.json()["detail"]
    r = await post(client, incident(source_system="ambulance-120", type="ambulance"), partner)
    assert r.status == 403 and "files under 'police-110', 'fire-119'" in r.json()["detail"]
    # A token whose name is not a source_system files under nothing until configured.
    odd = await make_token(hub, "linkage", name="Police gateway 2")
    r = await post(client, incident(), odd)
    assert r.status == 403 and "files under no source_system" in r.json()["detail"]
    assert (await hub.read(lambda repo: repo.counts()))["cases_total"] == 0


def test_a_source_system_reserved_for_two_partners_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_setup(tmp_path, web={"linkage": {"partners": {
            "police-gateway": {"systems": ["police-110"]}, "city-gateway": {"systems": ["police-110"]}}}})
    assert "web.linkage.partners.city-gateway.systems.0" in str(info.value)
    assert "already reserved for partner 'police-gateway'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        make_setup(tmp_path, web={"linkage": {"partners": {
            "gw": {"systems": ["fire-119"]}, "fire-119": {"secret_env": "FIRE_SECRET"}}}})
    assert "web.linkage.partners.fire-119" in str(info.value) and "list its systems" in str(info.value)


def test_token_create_binds_a_linkage_token_to_its_systems(tmp_path, capsys):
    from hubtest import write_hub_yaml

    path = write_hub_yaml(tmp_path)
    path.write_text(path.read_text().replace(
        "web: {port: 0}", "web: {port: 0, linkage: {partners: {police-gateway: {systems: [police-110, fire-119]}}}}"))
    base = ["token", "create", "--config", str(path), "--role", "linkage"]
    assert main([*base, "--name", "police-gateway"]) == 0
    err = capsys.readouterr().err
    assert "files incidents under source_system police-110, fire-119 only" in err
    assert main([*base, "--name", "ambulance-120"]) == 0
    assert "under source_system ambulance-120 only" in capsys.readouterr().err
    # A token named after another partner's system would take it: refused at creation.
    assert main([*base, "--name", "police-110"]) == 1
    err = capsys.readouterr().err
    assert "'police-110' is reserved for another partner" in err and "Traceback" not in err
    assert main([*base, "--name", "Police gateway 2"]) == 1
    assert "name it after its system" in capsys.readouterr().err


async def test_admin_api_refuses_a_linkage_token_for_a_reserved_system(hub):
    client = Client(hub)
    try:
        admin = await make_token(hub, "admin", name="ops")
        r = await client.post("/api/v1/admin/tokens", token=admin,
                              json={"name": "fire-119", "role": "linkage"})
        assert r.status == 400 and "reserved for another partner" in r.json()["detail"], r.text
        r = await client.post("/api/v1/admin/tokens", token=admin,
                              json={"name": "ambulance-120", "role": "linkage"})
        assert r.status == 201, r.text
    finally:
        await client.close()
