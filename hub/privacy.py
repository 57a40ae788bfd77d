"""What of a reporter's contact other people may see. Pure.

A reporter's email or phone is shown in full only to the operators who call them back
(回访); everywhere else (the case page's deliveries for other roles, the API, rows past
retention) it is masked: ``r***@example.org``, ``+86*******01``.
"""

from __future__ import annotations

__all__ = ["REPORTER_KIND_PREFIX", "is_reporter_kind", "mask_address"]

# Deliveries to reporters have kinds "reporter_accepted", "reporter_closed", ...
REPORTER_KIND_PREFIX = "reporter_"


def is_reporter_kind(kind: str) -> bool:
    return kind.startswith(REPORTER_KIND_PREFIX)


def mask_address(address: str) -> str:
    """An email keeps its first character and its domain; a phone number its first three
    and last two characters; anything else its first character."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(address) > 6:
        return address[:3] + "*" * (len(address) - 5) + address[-2:]
    return address[:1] + "***"
