"""docs/hub.md keeps up with the code: every CLI command, config key and route is there."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from hub.cli import _parser
from hub.config import HubConfig
from hub.web.app import ROUTES

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = (DOCS / "hub.md").read_text()
WEB_DOC = (DOCS / "web.md").read_text()


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        ann = field.annotation
        inner = next((a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else inner
        if sub is not None and prefix == "" and name not in ("screening",):
            out += _keys(sub, key + ".")
        else:
            out.append(key)
    return out


def test_every_cli_command_is_documented():
    sub = next(a for a in _parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"cityops-hub {name}" in DOC, name


def test_every_config_key_is_documented():
    missing = [k for k in _keys(HubConfig) if k not in DOC]
    assert not missing, f"document these hub.yaml keys in docs/hub.md: {missing}"


def test_every_route_is_documented():
    for r in ROUTES:  # the web's reference is docs/web.md
        shown = r.path.split("{")[0].rstrip("/") or "/"
        assert f"{r.method} {shown}" in DOC + WEB_DOC, r.path
