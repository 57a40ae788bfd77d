"""A small Chrome DevTools Protocol client over aiohttp websockets: enough to drive
Debian's headless Chromium in tests (navigate, evaluate, upload a file, screenshot).
No WebDriver binary and no browser download: ``/usr/bin/chromium`` only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0"]


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, profile_dir: Path, width: int = 1440, height: int = 900, *,
                 lang: str = "en-US", env: dict[str, str] | None = None) -> None:
        """``lang``: the Accept-Language the pages are asked in (the suite reads English;
        the hub's default is Chinese). ``env``: extra environment (e.g. FONTCONFIG_FILE)."""
        self.profile = profile_dir
        self.lang = lang
        self.env = env or {}
        self.width, self.height = width, height
        self.proc: subprocess.Popen | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.console: list[str] = []

    async def start(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", f"--lang={self.lang}",
             f"--accept-lang={self.lang}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TZ": "UTC", **self.env})
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise CdpError("chromium did not start (no DevToolsActivePort)")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width,
                        height=self.height, deviceScaleFactor=1, mobile=False)
        agent = (await self.send("Browser.getVersion"))["userAgent"]
        await self.send("Emulation.setUserAgentOverride", userAgent=agent,
                        acceptLanguage=self.lang)
        return self

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut and not fut.done():
                    if "error" in data:
                        fut.set_exception(CdpError(str(data["error"])))
                    else:
                        fut.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(data["params"].get("exceptionDetails", {}))[:500])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def eval(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                              awaitPromise=True)
        if "exceptionDetails" in res:
            raise CdpError(f"{expression[:80]}: {res['exceptionDetails'].get('text')} "
                           f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(CdpError):
                value = await self.eval(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                url = await self.eval("location.href")
                raise AssertionError(f"timed out waiting for {what or expression} on {url}")
            await asyncio.sleep(0.05)

    async def loaded_marker(self) -> str | None:
        return await self.eval("document.documentElement.dataset.loadedAt || null")

    async def goto(self, url: str) -> None:
        before = await self.loaded_marker()
        await self.send("Page.navigate", url=url)
        await self.wait_for_new_page(before)

    async def wait_for_new_page(self, before: str | None, timeout: float = 15.0) -> None:
        await self.wait_for(
            f"document.readyState === 'complete' && document.documentElement.dataset.loadedAt "
            f"&& document.documentElement.dataset.loadedAt !== {json.dumps(before)}",
            timeout, "the next page to load")

    async def fill(self, selector: str, value: str) -> None:
        await self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        f" e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input', "
                        f"{{bubbles: true}})); return true; }})()")

    async def click(self, selector: str) -> None:
        ok = await self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                             f" if (!e) return false; e.click(); return true; }})()")
        if not ok:
            raise AssertionError(f"nothing to click at {selector}")

    async def tap(self, x: float, y: float) -> None:
        """A real mouse click at viewport coordinates (events carry clientX/clientY)."""
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                            clickCount=1)

    async def click_and_wait(self, selector: str) -> None:
        before = await self.loaded_marker()
        await self.click(selector)
        await self.wait_for_new_page(before)

    async def set_file(self, selector: str, path: Path) -> None:
        doc = await self.send("DOM.getDocument", depth=0)
        node = await self.send("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector=selector)
        if not node.get("nodeId"):
            raise AssertionError(f"no file input at {selector}")
        await self.send("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(path)])

    async def capture(self, selector: str) -> bytes:
        """A PNG of the element at ``selector`` (its bounding box on the page)."""
        box = await self.eval(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                              f".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }})()")
        x, y, w, h = box
        data = await self.send("Page.captureScreenshot", format="png",
                               clip={"x": x, "y": y, "width": max(w, 1), "height": max(h, 1),
                                     "scale": 1})
        return base64.b64decode(data["data"])

    async def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": self.width,
                              "height": min(int(size["height"]), 4000), "scale": 1}
            params["captureBeyondViewport"] = True
        data = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        if self._reader:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
