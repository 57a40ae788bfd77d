"""The pure parts of linked incidents (hub/linkage.py): type mapping precedence, the HMAC
signature and its window, a point inside a concave grid, the incident model's checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hub.geo import Grid
from hub.linkage import (
    Incident,
    LinkageConfig,
    LinkagePartner,
    check_signature,
    check_times,
    grid_point,
    incident_digest,
    map_type,
    sign,
)

NOW = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def test_the_most_specific_mapping_wins():
    types = {"police-110:theft": "community_safety.theft", "theft": "linkage.police_110",
             "police-110:*": "linkage.police_110", "fire": "linkage.fire_119"}
    assert map_type(types, "police-110", "theft") == "community_safety.theft"
    assert map_type(types, "police-999", "theft") == "linkage.police_110"
    assert map_type(types, "police-110", "anything") == "linkage.police_110"
    assert map_type(types, "fire-119", "fire") == "linkage.fire_119"
    assert map_type(types, "fire-119", "flood") is None


def test_signature_checks():
    body = b'{"a": 1}'
    ts = str(int(NOW.timestamp()))
    good = sign("secret", ts, body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert check_signature("secret", ts, good, body, NOW.timestamp(), 300) is None
    assert check_signature("secret", ts, good, body, NOW.timestamp() + 299, 300) is None
    assert "from the hub's clock" in check_signature("secret", ts, good, body,
                                                     NOW.timestamp() + 301, 300)
    assert "does not match" in check_signature("other", ts, good, body, NOW.timestamp(), 300)
    assert "does not match" in check_signature("secret", ts, good, body + b" ", NOW.timestamp(), 300)
    assert "whole Unix seconds" in check_signature("secret", "soon", good, body, 0, 300)
    assert "X-Cityops-Timestamp" in check_signature("secret", None, None, body, 0, 300)


def test_require_signature_needs_a_secret():
    with pytest.raises(ValidationError, match="needs secret_env"):
        LinkagePartner(require_signature=True)


def incident(**over):
    data = {"source_system": "police-110", "external_id": "P-1", "type": "police",
            "occurred_at": NOW.isoformat(), "location": {"lat": 31.2, "lon": 121.4}}
    data.update(over)
    return Incident.model_validate(data)


def test_times_and_digest():
    cfg = LinkageConfig()
    assert check_times(incident(), NOW, cfg) == {}
    late = incident(occurred_at=(NOW + timedelta(minutes=10)).isoformat())
    assert "in the future" in check_times(late, NOW, cfg)["occurred_at"]
    old = incident(occurred_at=(NOW - timedelta(hours=73)).isoformat())
    assert "72 h ago" in check_times(old, NOW, cfg)["occurred_at"]
    # The digest ignores how the sender wrote it, not what it says.
    same = incident(occurred_at=NOW.astimezone().isoformat())
    assert incident_digest(incident()) == incident_digest(same)
    assert incident_digest(incident()) != incident_digest(incident(description="more"))


def test_a_point_inside_a_concave_grid():
    # An L-shaped grid whose bounding-box centre lies outside it.
    ring = [(0.0, 0.0), (2.0, 0.0), (2.0, 0.5), (0.5, 0.5), (0.5, 2.0), (0.0, 2.0), (0.0, 0.0)]
    grid = Grid("g-l", "L", "", "", ((ring,),), (0.0, 0.0, 2.0, 2.0))
    assert not grid.contains(1.0, 1.0)
    lat, lon = grid_point(grid)
    assert grid.contains(lat, lon)
