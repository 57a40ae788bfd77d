"""``cityops-hub user`` and ``cityops-hub token``: accounts and API tokens from a shell,
against the same database the hub serves (a short second writer, like ``enroll``)."""

from __future__ import annotations

import io

import pytest
from hubtest import make_setup, write_hub_yaml
from webtest import Client

from hub.app import Hub
from hub.cli import main
from hub.store.sqlite import SqliteRepository


@pytest.fixture
def hub_yaml(tmp_path):
    path = write_hub_yaml(tmp_path)
    repo = SqliteRepository(tmp_path / "hub.sqlite")  # create the schema, as the hub would
    repo.close()
    return path


def run(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_user_add_list_passwd_disable(hub_yaml, monkeypatch, capsys):
    cfg = str(hub_yaml)
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "li", "--role",
                       "handler", "--department", "drainage", "--name", "Li Wei",
                       "--password-stdin", stdin="a-good-password\n")
    assert code == 0 and "user li (handler) added" in err
    code, out, _ = run(monkeypatch, capsys, "user", "list", "--config", cfg)
    assert code == 0 and "li" in out and "handler" in out and "drainage" in out and "active" in out
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "li", "--role",
                       "operator", "--password-stdin", stdin="a-good-password\n")
    assert code == 1 and err.count("\n") == 1 and "exists already" in err
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "wang", "--role",
                       "handler", "--password-stdin", stdin="a-good-password\n")
    assert code == 1 and "give --department" in err
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "zhao", "--role",
                       "operator", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 10 characters" in err
    code, _, err = run(monkeypatch, capsys, "user", "passwd", "--config", cfg, "li",
                       "--password-stdin", stdin="another-good-one\n")
    assert code == 0 and "password of li changed" in err
    code, _, err = run(monkeypatch, capsys, "user", "disable", "--config", cfg, "li")
    assert code == 0 and "li disabled" in err
    code, out, _ = run(monkeypatch, capsys, "user", "list", "--config", cfg)
    assert "disabled" in out
    code, _, err = run(monkeypatch, capsys, "user", "disable", "--config", cfg, "ghost")
    assert code == 1 and "no user 'ghost'" in err


def test_token_create_list_revoke(hub_yaml, monkeypatch, capsys):
    cfg = str(hub_yaml)
    code, out, err = run(monkeypatch, capsys, "token", "create", "--config", cfg, "--role",
                         "handler", "--department", "drainage", "--name", "drainage-system")
    assert code == 0 and out.startswith("cot_") and "shown only now" in err
    token = out.strip()
    code, out, _ = run(monkeypatch, capsys, "token", "list", "--config", cfg)
    assert "drainage-system" in out and "active" in out and token not in out
    code, _, err = run(monkeypatch, capsys, "token", "create", "--config", cfg, "--role",
                       "handler", "--department", "nowhere")
    assert code == 1 and "unknown department 'nowhere'" in err
    code, _, err = run(monkeypatch, capsys, "token", "revoke", "--config", cfg, "1")
    assert code == 0 and "token 1 revoked" in err
    code, _, err = run(monkeypatch, capsys, "token", "revoke", "--config", cfg, "1")
    assert code == 1 and "no active API token with id 1" in err
    code, out, _ = run(monkeypatch, capsys, "token", "list", "--config", cfg)
    assert "revoked" in out


async def test_a_cli_user_signs_in_to_the_running_hub(tmp_path, monkeypatch, capsys):
    hub = Hub(make_setup(tmp_path, web={"port": 0, "access_log": False}), run_scheduler=False)
    await hub.start()
    try:
        path = write_hub_yaml(tmp_path)
        code, _, _ = run(monkeypatch, capsys, "user", "add", "--config", str(path), "chen",
                         "--role", "dispatcher", "--password-stdin", stdin="dispatch-me-please\n")
        assert code == 0
        c = Client(hub)
        try:
            assert (await c.login("chen", "dispatch-me-please")).status == 303
            assert (await c.get("/api/v1/me")).json()["role"] == "dispatcher"
        finally:
            await c.close()
    finally:
        await hub.stop()
