"""Station Bearer tokens for firmware downloads: issued once in plain text, stored only as a SHA-256 hash."""

# Opaque tokens, not JWTs: a station token names one station and opens only the download route (the
# "station token" column of the README's route table); user sessions never accept it.

from __future__ import annotations

import hashlib
import logging
import re
import secrets

from sqlalchemy.ext.asyncio import AsyncConnection

from cloud_api.audit.trail import record_audit
from cloud_api.domain.errors import DomainError
from cloud_api.firmware import repository as repo
from mes_contracts.errors import ErrorCode

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mes_st_"
_STATION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_station_id(station_id: str) -> str:
    if not _STATION.fullmatch(station_id):
        raise DomainError(
            ErrorCode.INVALID_FIRMWARE,
            {"station_id": station_id},
            "station_id must be 1-64 letters, digits, '.', '_' or '-'",
        )
    return station_id


async def create_station_token(
    conn: AsyncConnection, station_id: str, actor: str = "system", revoke_previous: bool = True
) -> str:
    """A new random token for `station_id` (returned once, never stored); by default it replaces older ones."""
    check_station_id(station_id)
    revoked = await repo.revoke_tokens(conn, station_id) if revoke_previous else 0
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_hash = hash_token(token)
    created_at = await repo.insert_token(conn, station_id, token_hash, actor)
    log.info("station token issued for %s by %s", station_id, actor)
    # Never the token itself: a short prefix of its hash tells tokens apart in the trail.
    await record_audit(
        conn,
        actor=actor,
        action="station_token.issue",
        entity="station",
        entity_key=station_id,
        old={"live_tokens": revoked} if revoke_previous else None,
        new={"live_tokens": 1, "token_sha256_prefix": token_hash[:12], "created_at": created_at},
    )
    return token


async def revoke_station_tokens(conn: AsyncConnection, station_id: str, actor: str = "system") -> int:
    count = await repo.revoke_tokens(conn, check_station_id(station_id))
    log.info("revoked %s token(s) of station %s", count, station_id)
    await record_audit(
        conn,
        actor=actor,
        action="station_token.revoke",
        entity="station",
        entity_key=station_id,
        old={"live_tokens": count},
        new={"live_tokens": 0},
    )
    return count


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate_station(conn: AsyncConnection, authorization: str | None) -> str:
    """The station id behind a valid Bearer token; UNAUTHORIZED when missing, unknown or revoked."""
    token = bearer_token(authorization)
    if token is None:
        raise DomainError(ErrorCode.UNAUTHORIZED, None, "missing bearer token")
    station = await repo.use_token(conn, hash_token(token))
    if station is None:
        raise DomainError(ErrorCode.UNAUTHORIZED, None, "unknown or revoked token")
    return station
