"""The Chinese-first UI (issue 21 part 4): the language a request gets, complete zh_CN
and en catalogues, templates with no string outside gettext, and pages, flashes, form
errors and problem documents in the asker's language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from webtest import Client, open_case

from hub.web import i18n

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "hub" / "web" / "templates"


# -- choosing the language --------------------------------------------------------------------

@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, None, "zh_CN"),  # nothing says otherwise: the seed is a Shanghai centre
    (None, "", "zh_CN"),
    (None, "en-US,en;q=0.9", "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"),
    (None, "en;q=0.5, zh-Hans;q=0.9", "zh_CN"),  # by weight, not order
    (None, "fr-FR, en-GB;q=0.7", "en"),  # the first language the hub has
    (None, "fr-FR, de", "zh_CN"),  # none it has
    (None, "zh;q=0, en", "en"),  # q=0: not wanted
    (None, "zh-TW", "zh_CN"),  # Chinese, the nearest the hub has
    ("en", "zh-CN", "en"),  # the user's own choice wins
    ("zh_CN", "en", "zh_CN"),
    ("xx", "en", "en"),  # an unknown cookie is ignored
])
def test_language_choice(cookie, header, expected):
    assert i18n.choose(cookie, header) == expected


# -- the catalogues -----------------------------------------------------------------------------

def extracted_msgids() -> set[str]:
    """Every string the templates and hub/web's Python mark, as ``pybabel extract`` with
    babel.cfg finds them (the singular of a plural pair)."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f, "babel.cfg")
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    ids: set[str] = set()
    for sub in ("hub/web",):
        # walking only hub/web keeps the test fast; the patterns are relative to the root
        relmap = [(pat.removeprefix(sub + "/"), m) for pat, m in method_map]
        relopts = {pat.removeprefix(sub + "/"): o for pat, o in options_map.items()}
        for _file, _line, msg, _comments, _ctx in extract_from_dir(
                str(ROOT / sub), relmap, relopts, keywords=keywords):
            ids.add(msg[0] if isinstance(msg, tuple) else msg)
    return ids


def catalogue(locale: str):
    with (i18n.LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=locale)


def test_zh_cn_catalogue_translates_every_string():
    ids = extracted_msgids()
    assert len(ids) > 300  # the extraction found the templates and the Python side
    zh = catalogue("zh_CN")
    missing, fuzzy = [], []
    for msgid in sorted(ids):
        msg = zh.get(msgid)
        strings = (msg.string if isinstance(msg.string, tuple) else (msg.string,)) if msg else ("",)
        if msg is None or not all(strings):
            missing.append(msgid)
        elif msg.fuzzy:
            fuzzy.append(msgid)
    assert not missing, f"untranslated in zh_CN (run the update in docs/web.md): {missing[:20]}"
    assert not fuzzy, f"fuzzy in zh_CN: {fuzzy[:20]}"
    # placeholders agree between each English string and its Chinese
    problems = [(m.id, errs) for m, errs in zh.check()]
    assert not problems, problems[:10]
    # and the Chinese is Chinese: a translation copied from the English would slip through
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", m.string if isinstance(m.string, str)
                                else m.string[0])) for m in zh if m.id) > 0.9 * len(ids)


def test_en_catalogue_has_every_string():
    ids = extracted_msgids()
    en = catalogue("en")
    assert not [m for m in sorted(ids) if en.get(m) is None]


def test_compiled_catalogues_translate():
    zh, en = i18n.translations("zh_CN"), i18n.translations("en")
    assert zh.gettext("Sign in") == "登录" and en.gettext("Sign in") == "Sign in"
    assert zh.ngettext("%(num)d event", "%(num)d events", 3) % {"num": 3} == "3 个事件"
    assert en.ngettext("%(num)d event", "%(num)d events", 3) % {"num": 3} == "3 events"


def test_every_script_message_exists():
    """The scripts look their messages up by key in the table the page carries; a key
    with no entry would show the key itself."""
    from hub.web.labels import JS_MESSAGES

    used: set[str] = set()
    for js in (ROOT / "hub" / "web" / "static").glob("*.js"):
        text = js.read_text()
        used |= set(re.findall(r'\bt\("([a-z_0-9]+)"[,)]', text))
        # keys made at run time: a prefix and a value from the data
        for prefix in re.findall(r'\bt\("([a-z_]+_)" \+', text):
            assert any(k.startswith(prefix) for k in JS_MESSAGES), prefix
    assert used, "no script uses t()"
    assert not used - set(JS_MESSAGES), used - set(JS_MESSAGES)
    for prefix, values in (("state_", ("new", "in_progress", "escalated", "resolved")),
                           ("map_level_", "0123"), ("dev_", ("up", "down", "unknown", "offline"))):
        assert all(prefix + v in JS_MESSAGES for v in values)


def gettext_shadowed(source: str) -> list[str]:
    """Functions that call ``_()`` and also bind ``_`` (``a, _ = ...``): there ``_`` is the
    local value, and the call fails at run time."""
    import ast

    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        own = list(ast.walk(fn))  # a nested function's body counts for the outer one too
        comp_targets = {id(t) for n in own if isinstance(n, ast.comprehension)
                        for t in ast.walk(n.target)}
        binds = any(isinstance(n, ast.Name) and n.id == "_" and isinstance(n.ctx, ast.Store)
                    and id(n) not in comp_targets for n in own)
        calls = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_"
                    for n in own)
        if binds and calls:
            found.append(fn.name)
    return found


def test_gettext_is_never_shadowed():
    assert gettext_shadowed("def f(s):\n    a, _, b = s.partition(' ')\n    return _('x')\n") == ["f"]
    assert gettext_shadowed("def f(s):\n    return [_('x') for _ in s]\n") == []
    for path in (ROOT / "hub" / "web").glob("*.py"):
        assert gettext_shadowed(path.read_text()) == [], path.name


# -- templates: no string outside gettext -------------------------------------------------------

# words that read the same in both languages (names, formats, units)
SAME_IN_BOTH = {"cityops", "YAML", "JSON", "fps"}


def bare_text(source: str) -> list[str]:
    """Text a template shows that does not go through gettext: English words, or Chinese
    written into the template (outside Jinja comments)."""
    text = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    text = re.sub(r"\{% block (body_attrs|body_class|main_class) %\}.*?\{% endblock %\}", " ",
                  text, flags=re.S)
    text = re.sub(r"\{%.*?%\}|\{\{.*?\}\}", " ", text, flags=re.S)
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
    found = [m.group(2) for m in re.finditer(r'\b(title|alt|placeholder|aria-label|label)="([^"]*)"',
                                             text)
             if set(re.findall(r"[A-Za-z][A-Za-z']+", m.group(2))) - SAME_IN_BOTH
             or re.search(r"[\u4e00-\u9fff]", m.group(2))]
    for line in re.sub(r"<[^>]*>", "\n", text).split("\n"):
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z']+", line) if w not in SAME_IN_BOTH]
        if words or re.search(r"[\u4e00-\u9fff]", line):
            found.append(line.strip())
    return found


def test_bare_text_finds_untranslated_strings():
    assert bare_text('<p>Hello <span class="zh">你好</span></p>') == ["Hello", "你好"]
    assert bare_text('<input placeholder="note">') == ["note"]
    assert bare_text('<p>{{ _("Hello") }} {# a comment #}</p><b>YAML</b>') == []


@pytest.mark.parametrize("name", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_template_text_goes_through_gettext(name):
    assert bare_text((TEMPLATES / name).read_text()) == []


# -- pages, flashes, form errors and problems in the asker's language ------------------------------

def html_lang(html: str) -> str:
    return re.search(r'<html lang="([^"]+)"', html).group(1)


async def test_pages_follow_the_browser_and_the_users_choice(hub, agent):
    plain = Client(hub, lang=None)  # says nothing: Chinese
    zh = Client(hub, lang="zh-CN,zh;q=0.9")
    en = Client(hub, lang="en-GB,en;q=0.9")
    try:
        page = await plain.get("/login")
        assert html_lang(page.text) == "zh-CN" and "登录" in page.text and "Sign in" not in page.text
        page = await en.get("/login")
        assert html_lang(page.text) == "en" and "Sign in" in page.text and "登录" not in page.text
        assert page.headers["Content-Language"] == "en"

        # a failed sign-in says why in the page's language
        token = await zh.login_form_token()
        r = await zh.post("/login", data={"username": "op", "password": "nope",
                                          "csrf_token": token, "next": "/"})
        assert r.status == 401 and "用户名或密码错误" in r.text

        # the language switch: a cookie that wins over Accept-Language
        r = await zh.get("/lang/en?next=/login")
        assert r.status == 303 and r.headers["Location"] == "/login"
        page = await zh.get("/login")
        assert html_lang(page.text) == "en" and "Sign in" in page.text
        r = await zh.get("/lang/zh_CN?next=https://evil.example/")
        assert r.status == 303 and r.headers["Location"] == "/"
        assert (await zh.get("/lang/fr")).status == 404

        # signed in: the navigation, the overview and a case page in Chinese
        agent.birth()
        case_id = await open_case(hub, agent)
        assert (await zh.login("op")).status == 303
        page = await zh.get("/")
        assert html_lang(page.text) == "zh-CN"
        assert all(w in page.text for w in ("总览", "案件", "一张图", "在办案件", "道路积水"))
        assert "新桥1号网格" in page.text and "Xinqiao grid 1" not in page.text  # grid names too
        assert 'id="lang-switch" href="/lang/en?next=/"' in page.text
        messages = json.loads(re.search(r'<script type="application/json" id="i18n-messages">'
                                        r'(.*?)</script>', page.text).group(1))
        assert messages["report_sending"] == "发送中…" and messages["state_new"] == "新建"
        page = await zh.get(f"/cases/{case_id}")
        assert all(w in page.text for w in ("处置前后对比", "处置记录", "操作", "添加备注"))

        # a flash after a form, and a form error
        r = await zh.form(f"/cases/{case_id}/note", {"text": "已到现场"})
        assert r.status == 303
        page = await zh.get(r.headers["Location"])
        assert '<div class="flash ok" role="status">已添加备注。</div>' in page.text
        assert "<b>备注</b>" in page.text and "<b>立案</b>" in page.text  # the audit trail
        r = await zh.form(f"/cases/{case_id}/note", {"text": ""})
        assert r.status == 400 and '<span class="field-error" role="alert">必填</span>' in r.text
        assert (await en.login("op")).status == 303
        r = await en.form(f"/cases/{case_id}/note", {"text": ""})
        assert r.status == 400 and '<span class="field-error" role="alert">required</span>' in r.text
        page = await en.get("/")
        assert "Xinqiao grid 1" in page.text and "新桥1号网格" not in page.text

        # an error page
        page = await zh.get("/cases/99999")
        assert page.status == 404 and "没有此案件" in page.text and "案件 99999 不存在" in page.text
    finally:
        for c in (plain, zh, en):
            await c.close()


async def test_problem_documents_follow_accept_language(hub, client):
    await client.login("op")
    zh = await client.get("/api/v1/cases/99999", headers={"Accept-Language": "zh-CN"})
    en = await client.get("/api/v1/cases/99999", headers={"Accept-Language": "en"})
    assert zh.status == en.status == 404
    assert zh.content_type == "application/problem+json"
    assert (zh.headers["Content-Language"], en.headers["Content-Language"]) == ("zh-CN", "en")
    assert "Accept-Language" in zh.headers["Vary"]
    z, e = zh.json(), en.json()
    # the machine parts stay the same in every language
    assert (z["type"], z["code"], z["status"]) == (e["type"], e["code"], e["status"]) == \
        ("about:blank", "no_such_case", 404)
    assert (z["title"], z["detail"]) == ("没有此案件", "案件 99999 不存在")
    assert (e["title"], e["detail"]) == ("No such case", "case 99999 does not exist")
    # a field error of the JSON API too
    bad = await client.api("POST", "/api/v1/cases/1/notes", {"text": "x", "extra": 1})
    assert bad.status == 400 and bad.json()["errors"]["extra"] == "unknown field; remove it"
    client.lang = "zh-CN"
    bad = await client.api("POST", "/api/v1/cases/1/notes", {"text": "x", "extra": 1})
    assert bad.json()["errors"]["extra"] == "未知字段，请删除" and bad.json()["title"] == "输入有误"
    # refused before any view runs (the security middleware)
    r = await client.get("/api/v1/cases", headers={"Authorization": "Basic b3A6cHc="})
    assert r.status == 401 and r.json()["code"] == "bad_token"
    assert r.json()["detail"] == "请使用 'Authorization: Bearer <token>'"
