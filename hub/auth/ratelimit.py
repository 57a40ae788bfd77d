"""Login rate limiting: failed sign-ins counted per account and per client address in
a sliding window. Pure (times come in as arguments); the web keeps one limiter.

A success clears the account's failures (not the address's: one person signing in
correctly must not unlock guessing at other accounts from the same address).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["LoginLimiter", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    scope: str = ""  # "account" | "address" when refused
    retry_after_s: int = 0


@dataclass
class LoginLimiter:
    per_account: int = 5
    per_address: int = 20
    window_s: float = 900.0
    max_keys: int = 100_000
    _fails: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def check(self, account: str, address: str, now: float) -> Verdict:
        """May a sign-in for ``account`` from ``address`` be tried now?"""
        for scope, key, limit in (("account", "u:" + account.lower(), self.per_account),
                                  ("address", "a:" + address, self.per_address)):
            q = self._recent(key, now)
            if len(q) >= limit:
                retry = int(q[0] + self.window_s - now) + 1
                return Verdict(False, scope, max(1, retry))
        return Verdict(True)

    def failed(self, account: str, address: str, now: float) -> None:
        if len(self._fails) >= self.max_keys:  # bounded memory under a spray of names
            oldest = min(self._fails, key=lambda k: self._fails[k][-1] if self._fails[k] else 0)
            del self._fails[oldest]
        for key in ("u:" + account.lower(), "a:" + address):
            self._fails.setdefault(key, deque()).append(now)

    def succeeded(self, account: str) -> None:
        self._fails.pop("u:" + account.lower(), None)
