"""Password hashing with Argon2id (``argon2-cffi``: memory-hard, salted, parameters in
the hash string so they can be raised later and old hashes rehashed on login)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import AuthError

__all__ = ["MIN_PASSWORD", "check_password_rules", "hash_password", "needs_rehash",
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
