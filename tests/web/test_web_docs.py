"""docs/web.md keeps up with the code: routes, roles, permissions, CLI commands, config
keys, metrics."""

from __future__ import annotations

import re
from pathlib import Path

from hub.auth.roles import PERMISSIONS, Role
from hub.cli import _parser
from hub.config import WebConfig
from hub.web.app import ROUTES

DOCS = Path(__file__).resolve().parents[2] / "docs"
WEB = (DOCS / "web.md").read_text()


def test_every_route_is_in_the_route_list():
    for r in ROUTES:
        shown = r.path.split("{")[0].rstrip("/") or "/"
        assert f"{r.method} {shown}" in WEB, f"document {r.method} {r.path} in docs/web.md"


def test_every_role_and_the_roles_table():
    for role in Role:
        assert role.value in WEB
    header = next(line for line in WEB.splitlines() if line.startswith("| permission |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == [r.value for r in Role]
    assert set(PERMISSIONS) >= {"view", "admin", "handler", "report", "metrics"}


def test_user_and_token_commands():
    sub = next(a for a in _parser()._actions if a.dest == "command")
    for group in ("user", "token"):
        inner = next(a for a in sub.choices[group]._actions if a.dest.endswith("_command"))
        for name in inner.choices:
            assert f"cityops-hub {group} {name}" in WEB, f"cityops-hub {group} {name}"


def test_every_web_config_key():
    for name in WebConfig.model_fields:
        assert f"`web.{name}" in WEB, f"web.{name}"


def test_every_metric_is_listed():
    source = (Path(__file__).resolve().parents[2] / "hub" / "web" / "views.py").read_text()
    for name in set(re.findall(r'"(cityops_[a-z_]+)"', source)):
        assert name in WEB, name
