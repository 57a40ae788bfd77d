"""Password hashing with Argon2id (``argon2-cffi``: memory-hard, salted, parameters in
the hash string so they can be raised later and old hashes rehashed on login).

Each verification costs 64 MiB and tens of milliseconds of CPU. The web verifies in a
:class:`PasswordChecker`: a pool of its own (one thread on a machine of two cores or
fewer, two above), so guesses can never fill the default executor that database reads
run in, and a cap on how many wait: past it a sign-in is refused as ``busy`` (429 with
``Retry-After``) rather than queued.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import AuthError

__all__ = ["MIN_PASSWORD", "PasswordChecker", "check_password_rules", "hash_password", "needs_rehash",
           "verify_password"]

MIN_PASSWORD = 10
MAX_PASSWORD = 256

# argon2-cffi's defaults are RFC 9106's second recommendation (Argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()

# A hash to verify against when the user does not exist, so both paths cost the same.
_DUMMY = _hasher.hash("cityops-no-such-user")


def check_password_rules(password: str, username: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError("weak_password", f"a password needs at least {MIN_PASSWORD} characters",
                        field="password")
    if len(password) > MAX_PASSWORD:
        raise AuthError("weak_password", f"a password has at most {MAX_PASSWORD} characters",
                        field="password")
    if username and password.lower() == username.lower():
        raise AuthError("weak_password", "the password must not be the user name",
                        field="password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when it matches. With ``None`` (no such user) it still spends the time."""
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


class PasswordChecker:
    """:func:`verify_password` off the event loop, in a small pool of its own."""

    def __init__(self, workers: int | None = None, max_waiting: int = 16) -> None:
        self.workers = workers or (1 if (os.cpu_count() or 1) <= 2 else 2)
        self.max_waiting = max_waiting
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hub-argon2")
        self._waiting = 0  # verifications queued or running; changed on the loop's thread
        self._count = itertools.count(1)
        self.verified = 0  # how many verifications ran (observable: /metrics, tests)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        self.verified = next(self._count)
        return verify_password(password_hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when it matches. :class:`AuthError` ``busy`` when ``max_waiting``
        verifications are queued or running already."""
        if self._waiting >= self.max_waiting:
            raise AuthError("busy", "the hub is checking many sign-ins right now; try again "
                            "in a few seconds", retry_after_s=2)
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self._verify, password_hash, password)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
