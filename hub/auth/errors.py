"""Errors of accounts and sign-in, under :class:`hub.errors.HubError`.

::

    HubError
    └── AuthError            a sign-in, account or token operation refused (has .code)
        ├── NotAuthenticated a request without valid credentials (401)
        └── Forbidden        a valid principal without the right (403)
"""

from __future__ import annotations

from ..errors import HubError

__all__ = ["AuthError", "Forbidden", "NotAuthenticated"]


class AuthError(HubError):
    """``code`` is stable (``bad_credentials``, ``rate_limited``, ``unknown_user``, ...);
    ``field`` names the form field at fault, when there is one."""

    status = 400

    def __init__(self, code: str, detail: str, *, field: str | None = None,
                 retry_after_s: int | None = None) -> None:
        self.code = code
        self.detail = detail
        self.field = field
        self.retry_after_s = retry_after_s
        super().__init__(detail)


class NotAuthenticated(AuthError):
    status = 401


class Forbidden(AuthError):
    status = 403
