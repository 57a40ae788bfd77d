"""The Chinese pages in Debian's headless Chromium: the glyphs render (fonts-noto-cjk,
installed by ./dev), not the empty boxes a machine without a CJK font shows.

The check: each of a few characters from the page's own Chinese text, drawn alone in the
page's font, must give a picture unlike the others and unlike a private-use code point
(which no font draws: the "tofu" box). Without a CJK font every one of them is that box.
A second browser that may not use the Noto CJK fonts shows the check catches that."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from cdpdriver import Browser
from webtest import PASSWORD

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which("chromium") is None and
                                 not os.path.exists("/usr/bin/chromium"),
                                 reason="Debian's chromium is not installed (./dev installs it)")]

TOFU = "\ue000"  # private use: no font has it, so it is drawn as the missing-glyph box
NOTO_CJK = "/usr/share/fonts/opentype/noto"


def differs(a: bytes, b: bytes) -> bool:
    """Whether two PNGs show different pictures (a different size counts)."""
    x = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_GRAYSCALE)
    y = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE)
    if x.shape != y.shape:
        return True
    return int((cv2.absdiff(x, y) > 40).sum()) > 10


async def glyph_pictures(b: Browser, chars: list[str]) -> tuple[list[bytes], bytes]:
    """Each character, and the tofu reference, drawn alone in the page's body font."""
    texts = [*chars, TOFU]
    await b.eval(f"""(() => {{
      const box = document.createElement('div');
      box.id = 'glyph-check';
      box.style.cssText = 'position:fixed;left:0;top:0;z-index:99999;background:#fff;' +
        'color:#000;font-size:40px;line-height:1.2;padding:8px;';
      {json.dumps(texts)}.forEach((t, i) => {{
        const s = document.createElement('span');
        s.id = 'glyph-' + i; s.textContent = t;
        s.style.cssText = 'display:inline-block;padding:2px;margin-right:6px;';
        box.appendChild(s);
      }});
      document.body.appendChild(box);
      return true;
    }})()""")
    pics = [await b.capture(f"#glyph-{i}") for i in range(len(texts))]
    await b.eval("document.getElementById('glyph-check').remove() || true")
    return pics[:-1], pics[-1]


def renders_glyphs(pics: list[bytes], tofu: bytes) -> bool:
    distinct = all(differs(pics[i], pics[j]) for i in range(len(pics))
                   for j in range(i + 1, len(pics)))
    return distinct and all(differs(p, tofu) for p in pics)


async def open_chinese_overview(b: Browser, hub) -> str:
    await b.goto(hub.web_url + "login")
    assert await b.eval("document.documentElement.lang") == "zh-CN"
    await b.fill("#username", "op")
    await b.fill("#password", PASSWORD)
    await b.click_and_wait("#login-submit")
    assert await b.eval("document.documentElement.lang") == "zh-CN"
    return await b.eval("document.querySelector('header.top nav').innerText")


async def test_chinese_pages_draw_their_glyphs(hub, tmp_path, artifacts):
    b = await Browser(tmp_path / "profile", lang="zh-CN,zh").start()
    try:
        nav = await open_chinese_overview(b, hub)
        assert "总览" in nav and "一张图" in nav and "Overview" not in nav
        chars = list(dict.fromkeys(c for c in nav if "\u4e00" <= c <= "\u9fff"))[:6]
        assert len(chars) == 6
        await b.screenshot(artifacts / "i18n-overview-zh.png", full_page=False)
        pics, tofu = await glyph_pictures(b, chars)
        assert renders_glyphs(pics, tofu), (
            "the Chinese text is drawn as empty boxes: install Debian's fonts-noto-cjk "
            "(./dev does)")
    finally:
        await b.close()


@pytest.mark.skipif(not Path(NOTO_CJK).is_dir(), reason="fonts-noto-cjk is not installed")
async def test_the_glyph_check_sees_boxes_without_a_cjk_font(hub, tmp_path):
    """The same check in a Chromium that may not use the Noto CJK fonts (the only CJK
    fonts on a Debian test machine): it must report boxes, so it can fail."""
    conf = tmp_path / "fonts.conf"
    conf.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <selectfont><rejectfont><glob>{NOTO_CJK}/*CJK*</glob></rejectfont></selectfont>
</fontconfig>
""")
    b = await Browser(tmp_path / "profile", lang="zh-CN,zh",
                      env={"FONTCONFIG_FILE": str(conf)}).start()
    try:
        nav = await open_chinese_overview(b, hub)
        chars = list(dict.fromkeys(c for c in nav if "\u4e00" <= c <= "\u9fff"))[:6]
        pics, tofu = await glyph_pictures(b, chars)
        assert not renders_glyphs(pics, tofu)
    finally:
        await b.close()
