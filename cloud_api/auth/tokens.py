"""Access tokens (JWT, HS256 pinned) and opaque refresh tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from cloud_api.auth.settings import AuthSettings
from cloud_api.domain.access import Role, valid_username
from cloud_api.domain.errors import DomainError
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

ALGORITHM = "HS256"  # pinned: the token's own header never chooses how it is checked
ACCESS_TYPE = "access"
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "role", "typ", "sid"]
REFRESH_PREFIX = "mes_rt_"
_SUCCESSOR_LABEL = b"mes-refresh-successor\x00"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    username: str
    role: Role
    session_id: str
    token_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class IssuedAccess:
    token: str
    expires_in: int


def issue_access(
    settings: AuthSettings, username: str, role: Role, session_id: str, now: float | None = None
) -> IssuedAccess:
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": username,
        "role": role.value,
        "typ": ACCESS_TYPE,
        "sid": session_id,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "nbf": issued,
        "exp": issued + settings.access_token_ttl_s,
    }
    return IssuedAccess(jwt.encode(claims, settings.signing_key, algorithm=ALGORITHM), settings.access_token_ttl_s)


def _unauthorized(reason: str) -> DomainError:
    return DomainError(ErrorCode.UNAUTHORIZED, None, reason)


def _decode(settings: AuthSettings, token: str) -> dict[str, object]:
    keys = settings.verification_keys
    for index, key in enumerate(keys):
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway_s,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.InvalidSignatureError:
            if index == len(keys) - 1:
                raise
    raise jwt.InvalidSignatureError("no verification key")


def decode_access(settings: AuthSettings, token: str) -> AccessClaims:
    """The claims of a valid access token; UNAUTHORIZED for anything else (the reason goes to the log only)."""
    try:
        claims = _decode(settings, token)
    except jwt.PyJWTError as error:
        log.info("access token refused: %s: %s", type(error).__name__, error)
        raise _unauthorized(f"invalid access token: {type(error).__name__}") from None
    sub, role, sid, jti, exp = (claims.get(k) for k in ("sub", "role", "sid", "jti", "exp"))
    if claims.get("typ") != ACCESS_TYPE:
        raise _unauthorized("not an access token")
    if not (isinstance(sub, str) and valid_username(sub)) or role not in {r.value for r in Role}:
        raise _unauthorized("malformed subject or role")
    if not isinstance(sid, str) or not isinstance(jti, str) or not isinstance(exp, int):
        raise _unauthorized("malformed session or token id")
    try:
        uuid.UUID(sid)
    except ValueError:
        raise _unauthorized("malformed session id") from None
    return AccessClaims(sub, Role(str(role)), sid, jti, exp)


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def successor_candidates(settings: AuthSettings, token: str) -> list[str]:
    """The refresh token that replaces `token`, per verification key (the first one is what rotation issues).

    Derived, not random, so that a second refresh inside the grace window can be given the very same successor
    without its plain text being stored anywhere; without the server key nobody can compute it.
    """
    found = []
    for key in settings.verification_keys:
        digest = hmac.new(key.encode("utf-8"), _SUCCESSOR_LABEL + token.encode("utf-8"), hashlib.sha256).digest()
        found.append(REFRESH_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))
    return found


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_refresh_token(token: str) -> bool:
    return token.startswith(REFRESH_PREFIX) and 20 <= len(token) <= 100
