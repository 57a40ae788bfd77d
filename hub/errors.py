"""Errors the hub raises on purpose, under :class:`protocol.errors.CityopsError`.

::

    CityopsError
    ├── BrokerError          (hub/broker.py) the broker could not be configured or reached
    └── HubError             anything the hub refuses or cannot do
        ├── StoreError       the database is unusable (locked by another hub, bad schema)
        ├── CaseError        an operation on a case that cannot be done (has .case_id)
        │   └── IllegalTransition  a state change the state machine refuses (has .reason)
        └── EnrollmentError  an enrollment token that is unknown, used or expired (has .code)
"""

from __future__ import annotations

from protocol.errors import CityopsError

__all__ = ["CaseError", "EnrollmentError", "HubError", "IllegalTransition", "StoreError"]


class HubError(CityopsError):
    """Base of the hub's own errors."""


class StoreError(HubError):
    """The database cannot be used (locked by another hub process, unreadable, ...)."""


class CaseError(HubError):
    """An operation on a case that cannot be done: unknown case, missing photo, ..."""

    def __init__(self, case_id: int | None, detail: str) -> None:
        self.case_id = case_id
        self.detail = detail
        super().__init__(f"case {case_id}: {detail}" if case_id is not None else detail)


class IllegalTransition(CaseError):
    """The state machine refuses this change; ``reason`` says why in words."""

    def __init__(self, case_id: int | None, from_state: str, to_state: str, reason: str) -> None:
        self.from_state = from_state
        self.to_state = to_state
        self.reason = reason
        super().__init__(case_id, f"cannot go from {from_state} to {to_state}: {reason}")


class EnrollmentError(HubError):
    """An enrollment was refused. ``code``: unknown_token, token_used, token_expired,
    bad_ttl, bad_agent_id, reserved_agent_id (the hub's own user or a pseudo-agent)."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(detail)
