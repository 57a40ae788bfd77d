"""Supervision's pure parts (issue 19, part 4): scopes resolving to grids, account levels
checked, who may issue an order to whom, who answers it, and which reminder is due when;
the store's supervision rows; the ``cityops-hub user --level/--scope`` commands."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from hubtest import EXAMPLES, write_hub_yaml

from hub.auth.errors import AuthError
from hub.auth.scope import check_level_scope, level_covers, resolve_scope
from hub.cases import supervision as sv
from hub.cli import main
from hub.geo import load_grids
from hub.store.repo import UserRow
from hub.store.sqlite import SqliteRepository

GRIDS = load_grids(EXAMPLES / "grids.geojson")
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
DEPS = {"drainage", "sanitation"}


# -- scopes ------------------------------------------------------------------------------------------
def test_a_scope_resolves_towns_districts_and_grids():
    assert resolve_scope("town", ["Xinqiao"], GRIDS) == {"g-01", "g-02", "g-03"}
    assert resolve_scope("district", ["Songjiang"], GRIDS) == {f"g-0{i}" for i in range(1, 7)}
    assert resolve_scope("town", ["Jiuting", "g-01"], GRIDS) == {"g-01", "g-04", "g-05", "g-06"}
    assert resolve_scope(None, [], GRIDS) is None  # no level: the whole city
    assert resolve_scope("city", [], GRIDS) is None
    assert resolve_scope("city", ["Xinqiao"], GRIDS) == {"g-01", "g-02", "g-03"}
    # fail closed: a name gone from the grids file, or no grids to resolve against
    assert resolve_scope("town", ["Atlantis"], GRIDS) == frozenset()
    assert resolve_scope("town", ["Xinqiao"], None) == frozenset()


def test_levels_and_scopes_are_checked_with_the_fix():
    assert check_level_scope("operator", "town", [" Xinqiao ", "Xinqiao"], GRIDS) == ("town", ["Xinqiao"])
    assert check_level_scope("operator", None, [], GRIDS) == (None, [])
    assert check_level_scope("dispatcher", "city", [], GRIDS) == ("city", [])
    cases = [
        (("handler", "town", ["Xinqiao"]), "bad_level"),
        (("operator", "county", ["Xinqiao"]), "bad_level"),
        (("operator", "town", []), "scope_required"),
        (("operator", None, ["Xinqiao"]), "level_required"),
        (("operator", "town", ["Atlantis"]), "unknown_scope"),
    ]
    for (role, level, scope), code in cases:
        with pytest.raises(AuthError) as exc:
            check_level_scope(role, level, scope, GRIDS)
        assert exc.value.code == code, (role, level, scope)
    with pytest.raises(AuthError) as exc:
        check_level_scope("operator", "town", ["Atlantis"], GRIDS)
    assert "Jiuting, Xinqiao" in exc.value.detail and "Songjiang" in exc.value.detail


def test_an_escalation_reaches_a_level_and_those_below():
    assert level_covers("town", 1) and level_covers("town", 3)
    assert not level_covers("district", 1) and level_covers("district", 2)
    assert not level_covers(None, 2) and level_covers(None, 3)


# -- issuing -------------------------------------------------------------------------------------------
def issue(level, kind="town", target="Jiuting", state="dispatched", hours=2.0, open_targets=(),
          may=True):
    sv.check_issue(sv.Issuer(level, may), state, kind, target, DEPS, timedelta(hours=hours),
                   set(open_targets))


def refusal(**kw) -> tuple[str, int]:
    with pytest.raises(sv.SupervisionRefused) as exc:
        issue(**kw)
    return exc.value.code, exc.value.status


def test_a_higher_level_supervises_the_levels_below():
    issue("district", "town")
    issue("district", "department", "drainage")
    issue("city", "district", "Songjiang")
    issue(None, "town")  # an operator without a level speaks for the city
    issue("district", "town", state="resolved")
    assert refusal(level="town", kind="department", target="drainage") == ("forbidden", 403)
    assert refusal(level="district", kind="district", target="Songjiang") == ("forbidden", 403)
    assert refusal(level="district", may=False) == ("forbidden", 403)
    assert refusal(level="city", kind="department", target="fire") == ("bad_target", 422)
    assert refusal(level="city", kind="town", target="") == ("bad_target", 422)
    assert refusal(level="city", state="closed") == ("illegal_state", 409)
    assert refusal(level="city", state="new") == ("illegal_state", 409)
    assert refusal(level="city", hours=0.1) == ("bad_deadline", 422)
    assert refusal(level="city", hours=24 * 31) == ("bad_deadline", 422)
    assert refusal(level="city", open_targets=[("town", "Jiuting")]) == ("already_open", 409)


def test_only_the_addressee_acknowledges_and_answers():
    town_here = sv.Addressee("town", None, False, True)
    town_elsewhere = sv.Addressee("town", None, False, False)
    district = sv.Addressee("district", None, False, True)
    crew = sv.Addressee(None, "drainage", True, True)
    assert sv.addressed_to(town_here, "town", "Jiuting")
    assert not sv.addressed_to(town_elsewhere, "town", "Jiuting")
    assert not sv.addressed_to(district, "town", "Jiuting")
    assert sv.addressed_to(crew, "department", "drainage")
    assert not sv.addressed_to(crew, "department", "sanitation")
    sv.check_acknowledge(town_here, "issued", "town", "Jiuting")
    with pytest.raises(sv.SupervisionRefused) as exc:
        sv.check_acknowledge(town_here, "acknowledged", "town", "Jiuting")
    assert exc.value.status == 409
    with pytest.raises(sv.SupervisionRefused) as exc:
        sv.check_answer(district, "issued", "town", "Jiuting", "done")
    assert exc.value.status == 403
    with pytest.raises(sv.SupervisionRefused) as exc:
        sv.check_answer(town_here, "acknowledged", "town", "Jiuting", "   ")
    assert exc.value.code == "answer_required"
    sv.check_answer(town_here, "issued", "town", "Jiuting", "done")  # answering acknowledges


# -- reminders -----------------------------------------------------------------------------------------
def clock(state="issued", reminded=False, overdue=False) -> sv.OrderClock:
    deadline_at, remind_at = sv.plan_order(T0, timedelta(hours=4))
    return sv.OrderClock(state, T0, deadline_at, remind_at, reminded, overdue)


def kinds(o: sv.OrderClock, minutes: float) -> list[str]:
    return [r.kind for r in sv.due_reminders(o, T0 + timedelta(minutes=minutes))]


def test_reminders_when_a_quarter_is_left_and_when_the_deadline_passes():
    o = clock()
    assert o.remind_at == T0 + timedelta(hours=3) and sv.next_due(o) == o.remind_at
    assert kinds(o, 179) == []
    assert kinds(o, 180) == ["due_soon"]
    reminded = clock(reminded=True)
    assert sv.next_due(reminded) == reminded.deadline_at
    assert kinds(reminded, 200) == []
    assert kinds(reminded, 240) == ["overdue"]
    done = clock(reminded=True, overdue=True)
    assert kinds(done, 10_000) == [] and sv.next_due(done) is None
    # a tick that comes only after the deadline sends the overdue reminder alone
    assert kinds(o, 300) == ["overdue"]
    # answered: nothing, ever
    answered = clock("answered")
    assert kinds(answered, 180) == [] and kinds(answered, 300) == [] and sv.next_due(answered) is None


# -- the store ---------------------------------------------------------------------------------------
def test_the_store_keeps_levels_scopes_and_orders():
    repo = SqliteRepository.memory()
    with repo.transaction():
        repo.add_user(UserRow(username="xq", role="operator", department=None, display_name="",
                              password_hash="x", disabled=False, created_at=T0, level="town",
                              scope=["Xinqiao"]))
        token_id = repo.add_api_token("ab" * 32, "screen", "operator", None, T0, "test",
                                      level="district", scope=["Songjiang"])
        deadline_at, remind_at = sv.plan_order(T0, timedelta(hours=2))
        oid = repo.add_supervision_order({
            "case_id": 7, "state": "issued", "target_kind": "town", "target": "Xinqiao",
            "note": "late", "issued_by": "sj", "issuer_level": "district", "issued_at": T0,
            "deadline_at": deadline_at, "remind_at": remind_at, "due_at": remind_at})
    user = repo.get_user("xq")
    assert (user.level, user.scope) == ("town", ["Xinqiao"])
    token = repo.get_api_token("ab" * 32)
    assert (token.id, token.level, token.scope) == (token_id, "district", ["Songjiang"])
    assert repo.supervision_due(T0 + timedelta(minutes=89)) == []
    assert [o.id for o in repo.supervision_due(T0 + timedelta(minutes=90))] == [oid]
    with repo.transaction():
        repo.update_supervision_order(oid, due_at=None, state="answered")
    assert repo.supervision_due(T0 + timedelta(days=9)) == []
    assert repo.get_supervision_order(oid).state == "answered"
    repo.close()


# -- the commands ------------------------------------------------------------------------------------
def run(monkeypatch, capsys, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_user_commands_set_levels_and_scopes(tmp_path, monkeypatch, capsys):
    cfg = str(write_hub_yaml(tmp_path))
    SqliteRepository(tmp_path / "hub.sqlite").close()
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "xq", "--role",
                       "operator", "--level", "town", "--scope", "Xinqiao",
                       "--password-stdin", stdin="a-good-password\n")
    assert code == 0 and "town level, scope Xinqiao" in err
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "jt", "--role",
                       "operator", "--level", "town", "--password-stdin", stdin="a-good-password\n")
    assert code == 1 and "give --scope" in err
    code, _, err = run(monkeypatch, capsys, "user", "add", "--config", cfg, "zz", "--role",
                       "operator", "--level", "town", "--scope", "Atlantis",
                       "--password-stdin", stdin="a-good-password\n")
    assert code == 1 and "'Atlantis' is not a grid, town or district" in err
    code, _, err = run(monkeypatch, capsys, "user", "scope", "--config", cfg, "xq", "--level",
                       "district", "--scope", "Songjiang")
    assert code == 0 and "district level, scope Songjiang" in err
    code, out, _ = run(monkeypatch, capsys, "user", "list", "--config", cfg)
    assert "district:Songjiang" in out
    code, _, err = run(monkeypatch, capsys, "user", "scope", "--config", cfg, "xq", "--level", "none")
    assert code == 0 and "unscoped" in err
    code, _, err = run(monkeypatch, capsys, "token", "create", "--config", cfg, "--role",
                       "operator", "--name", "xq-screen", "--level", "town", "--scope",
                       "Xinqiao,g-04")
    assert code == 0
    repo = SqliteRepository(tmp_path / "hub.sqlite", writer=False)
    assert [(t.level, t.scope) for t in repo.list_api_tokens()] == [("town", ["Xinqiao", "g-04"])]
    repo.close()
