"""Login rate limiting. Pure (times come in as arguments); the web keeps one limiter.

Each attempt is counted *before* its password is verified (:meth:`LoginLimiter.attempt`
reserves a slot; a success gives it back), so sixty concurrent guesses at one account
are sixty attempts, of which at most ``per_account`` are ever verified.

Three counters of failed sign-ins in a sliding window:

* **(address, account)**: ``per_account`` failures lock this account *from this address*
  (scope ``account``). A guesser behind a shared address locks only what it guesses at.
* **account, from every address**: ``per_account × ACCOUNT_SPREAD`` failures lock the
  account from addresses it has not signed in from lately (scope ``account``): guessing
  spread over many addresses is bounded too, and its owner keeps signing in from the
  usual place.
* **address, any account**: ``per_address`` failures lock the address (scope
  ``address``) for accounts that have not signed in from it lately: a spray of guesses at
  many names stops, while the people who work behind that address (an office's NAT, a
  reverse proxy) keep signing in.

"Lately": a success is remembered per (address, account) for ``known_s`` (30 days), in
this process only. Memory is bounded by ``max_keys`` per table.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["ACCOUNT_SPREAD", "LoginLimiter", "Verdict"]

ACCOUNT_SPREAD = 4


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    scope: str = ""  # "account" | "address" when refused
    retry_after_s: int = 0
    at: float = 0.0  # the reserved slot's time, for succeeded()/release()


def _pair(account: str, address: str) -> str:
    return f"p:{address}\x00{account.lower()}"


@dataclass
class LoginLimiter:
    per_account: int = 5
    per_address: int = 20
    window_s: float = 900.0
    max_keys: int = 100_000
    known_s: float = 30 * 86400.0
    _fails: dict[str, deque[float]] = field(default_factory=dict)
    _known: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def _is_known(self, account: str, address: str, now: float) -> bool:
        at = self._known.get(_pair(account, address))
        return at is not None and at > now - self.known_s

    def check(self, account: str, address: str, now: float) -> Verdict:
        """May a sign-in for ``account`` from ``address`` be tried now? (Reserves nothing.)"""
        known = self._is_known(account, address, now)
        limits = [("account", _pair(account, address), self.per_account)]
        if not known:
            limits += [("account", "u:" + account.lower(), self.per_account * ACCOUNT_SPREAD),
                       ("address", "a:" + address, self.per_address)]
        for scope, key, limit in limits:
            q = self._recent(key, now)
            if len(q) >= limit:
                retry = int(q[0] + self.window_s - now) + 1
                return Verdict(False, scope, max(1, retry))
        return Verdict(True, at=now)

    def attempt(self, account: str, address: str, now: float) -> Verdict:
        """:meth:`check`, and when allowed count the attempt as a failure at once. Call
        :meth:`succeeded` when the password was right, :meth:`release` when it was never
        verified; otherwise the failure stands."""
        verdict = self.check(account, address, now)
        if verdict.allowed:
            if len(self._fails) >= self.max_keys:  # bounded memory under a spray of names
                oldest = min(self._fails, key=lambda k: self._fails[k][-1] if self._fails[k] else 0)
                del self._fails[oldest]
            for key in (_pair(account, address), "u:" + account.lower(), "a:" + address):
                self._fails.setdefault(key, deque()).append(now)
        return verdict

    def _give_back(self, account: str, address: str, at: float, keys: tuple[str, ...]) -> None:
        for key in keys:
            q = self._fails.get(key)
            if q is not None and at in q:
                q.remove(at)
                if not q:
                    del self._fails[key]

    def release(self, account: str, address: str, verdict: Verdict) -> None:
        """The attempt was not verified after all (the hub was busy): not a failure."""
        self._give_back(account, address, verdict.at,
                        (_pair(account, address), "u:" + account.lower(), "a:" + address))

    def succeeded(self, account: str, address: str, verdict: Verdict, now: float) -> None:
        """The password was right: this address's failures at the account are forgotten,
        the attempt is no failure, and the pair is known from now on. Failures from other
        addresses, and at other accounts from this one, stand."""
        self._fails.pop(_pair(account, address), None)
        self._give_back(account, address, verdict.at, ("u:" + account.lower(), "a:" + address))
        key = _pair(account, address)
        self._known.pop(key, None)
        self._known[key] = now
        while len(self._known) > self.max_keys:
            self._known.popitem(last=False)

