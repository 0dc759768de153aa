"""Password hashing: argon2id for new hashes, bcrypt hashes (imports) still verify and are upgraded on login."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from functools import cache

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

log = logging.getLogger(__name__)

ONE_TIME_PASSWORD_BYTES = 12  # 16 URL-safe characters


@cache
def _hasher() -> PasswordHash:
    return PasswordHash((Argon2Hasher(), BcryptHasher()))


@cache
def _dummy_hash() -> str:
    # Unknown users are checked against this, so their answer takes as long as a wrong password's.
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


@dataclass(frozen=True, slots=True)
class Verified:
    ok: bool
    new_hash: str | None = None  # set when the stored hash should be replaced (bcrypt, old argon2 parameters)


def verify_password(password: str, stored_hash: str | None) -> Verified:
    """Check `password` against `stored_hash`; None (no password, unknown user) spends the same time and fails."""
    if stored_hash is None:
        _hasher().verify(password, _dummy_hash())
        return Verified(False)
    try:
        ok, new_hash = _hasher().verify_and_update(password, stored_hash)
    except UnknownHashError:
        log.warning("a stored password hash has an unknown format; the user cannot log in with it")
        _hasher().verify(password, _dummy_hash())
        return Verified(False)
    except ValueError:
        # bcrypt refuses passwords over 72 bytes outright; such a password cannot match a bcrypt hash.
        return Verified(False)
    return Verified(ok, new_hash if ok else None)


def one_time_password() -> str:
    return secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)


def warm_up() -> None:
    """Make the dummy hash now, so the first unknown-user login is not the only slow one."""
    _dummy_hash()
