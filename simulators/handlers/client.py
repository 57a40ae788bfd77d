"""A thin client of the hub's handler API (``/api/v1/handler/...``; see
``docs/openapi.yaml``), as a department's own system would use it: one API token, JSON
in and out, problem documents turned into :class:`HandlerApiError`."""

from __future__ import annotations

from typing import Any

import aiohttp

from protocol.errors import CityopsError

__all__ = ["HandlerApiError", "HandlerClient"]


class HandlerApiError(CityopsError):
    """The hub refused a request (or could not be reached)."""

    def __init__(self, department: str, what: str, status: int, code: str, detail: str) -> None:
        self.department, self.what, self.status, self.code = department, what, status, code
        super().__init__(f"{department}: {what}: HTTP {status} {code}: {detail}")

    @property
    def conflict(self) -> bool:
        """The case moved on meanwhile (closed, merged, sent elsewhere): not our fault."""
        return self.status in (403, 404, 409)


class HandlerClient:
    def __init__(self, base_url: str, token: str, department: str, *, timeout_s: float = 30.0) -> None:
        self.base = base_url.rstrip("/") + "/"
        self.department = department
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HandlerClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, what: str, **kw: Any) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        try:
            async with self._session.request(method, self.base + path, **kw) as r:
                if r.status >= 400:
                    try:
                        body = await r.json(content_type=None)
                    except ValueError:
                        body = {"detail": (await r.text())[:300]}
                    body = body if isinstance(body, dict) else {}
                    raise HandlerApiError(self.department, what, r.status, str(body.get("code", "")),
                                          str(body.get("detail") or body.get("title") or r.reason))
                return await r.json()
        except aiohttp.ClientError as exc:
            raise HandlerApiError(self.department, what, 0, "unreachable", f"{exc!r}") from None
        except TimeoutError:
            raise HandlerApiError(self.department, what, 0, "timeout", "no answer in time") from None

    async def cases(self, states: str = "dispatched,in_progress,escalated,reopened") -> list[dict[str, Any]]:
        data = await self._call("GET", "api/v1/handler/cases", "list cases",
                                params={"state": states, "limit": "500"})
        return list(data.get("cases", []))

    async def case(self, case_id: int) -> dict[str, Any]:
        return await self._call("GET", f"api/v1/handler/cases/{case_id}", f"case {case_id}")

    async def accept(self, case_id: int) -> dict[str, Any]:
        return (await self._call("POST", f"api/v1/handler/cases/{case_id}/accept",
                                 f"accept case {case_id}", json={}))["case"]

    async def reject(self, case_id: int, reason: str) -> dict[str, Any]:
        return (await self._call("POST", f"api/v1/handler/cases/{case_id}/reject",
                                 f"return case {case_id}", json={"reason": reason}))["case"]

    async def note(self, case_id: int, text: str) -> dict[str, Any]:
        return (await self._call("POST", f"api/v1/handler/cases/{case_id}/notes",
                                 f"note on case {case_id}", json={"text": text}))["case"]

    async def resolve(self, case_id: int, note: str, photo: bytes | None = None) -> dict[str, Any]:
        form = aiohttp.FormData(default_to_multipart=True)  # the contract: multipart, photo or not
        form.add_field("note", note)
        if photo is not None:
            form.add_field("photo", photo, filename=f"case-{case_id}-after.jpg", content_type="image/jpeg")
        return (await self._call("POST", f"api/v1/handler/cases/{case_id}/resolve",
                                 f"resolve case {case_id}", data=form))["case"]
