"""Sliding-window counters in Redis (one atomic Lua script) and the client IP behind trusted proxies."""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import Counter
from redis.exceptions import RedisError

from cloud_api.http.limits_settings import Network

log = logging.getLogger(__name__)

KEY_PREFIX = "mes:rl:"

REDIS_FAILURES = Counter(
    "mes_api_rate_limit_redis_errors_total",
    "Rate-limit checks let through because Redis did not answer (fail open)",
    ["scope"],
)

# A sliding log per key: one sorted-set member per counted event, scored by Redis' own clock in ms, so every API
# worker (and host) counts against the same time and the same set: exact across processes, no clock skew.
# mode "hit": count the event only when under the limit; "add": always count it; "peek": count nothing.
# Returns {allowed 0|1, events in the window, ms until one more event would be allowed}.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, limit, window, mode = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if mode == 'add' or (mode == 'hit' and count < limit) then
  redis.call('ZADD', key, now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', key, window)
  count = count + 1
  if mode == 'hit' then return {1, count, 0} end
end
if count < limit then return {1, count, 0} end
local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
local wait = window
if oldest[2] then wait = tonumber(oldest[2]) + window - now end
if wait < 1 then wait = 1 end
return {0, count, wait}
"""

Mode = Literal["hit", "add", "peek"]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    count: int
    retry_after_s: int


ALLOW = Decision(True, 0, 0)


def _script(state: Any, redis: Any) -> Any:
    script = getattr(state, "rate_limit_script", None)
    if script is None or getattr(state, "rate_limit_script_client", None) is not redis:
        script = redis.register_script(_SLIDING_LOG)
        state.rate_limit_script = script
        state.rate_limit_script_client = redis
    return script


_last_warning = 0.0


def _fail_open(scope: str, error: BaseException) -> None:
    global _last_warning
    REDIS_FAILURES.labels(scope).inc()
    now = time.monotonic()
    if now - _last_warning >= 30:  # one line per 30 s per process: a Redis outage must not flood the log
        _last_warning = now
        log.warning("rate limiting skipped (fail open): Redis did not answer: %s: %s", type(error).__name__, error)


async def sliding_log(state: Any, scope: str, key: str, limit: int, window_s: int, mode: Mode) -> Decision:
    """Count an event in KEY's window of WINDOW_S seconds; Redis down → allowed, logged and counted."""
    redis = getattr(state, "redis", None)
    if redis is None:
        return ALLOW
    try:
        allowed, count, wait_ms = await _script(state, redis)(
            keys=[KEY_PREFIX + key], args=[limit, window_s * 1000, secrets.token_hex(6), mode]
        )
    except (RedisError, OSError) as error:
        _fail_open(scope, error)
        return ALLOW
    return Decision(bool(allowed), int(count), max(1, math.ceil(int(wait_ms) / 1000)) if not allowed else 0)


async def forget(state: Any, scope: str, keys: Sequence[str]) -> None:
    redis = getattr(state, "redis", None)
    if redis is None:
        return
    try:
        await redis.delete(*(KEY_PREFIX + key for key in keys))
    except (RedisError, OSError) as error:
        _fail_open(scope, error)


def _address(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = entry.strip().strip('"')
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # "203.0.113.9:51234" (some proxies append the port)
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Iterable[Network]) -> bool:
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


def client_ip(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The socket peer; behind a trusted proxy the right-most X-Forwarded-For hop that is not a trusted proxy.

    Entries left of that hop were written by the client itself, so they can be anything and are never used.
    """
    peer = peer or "unknown"
    if not networks or not _trusted(_address(peer), networks):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return hop[:64]  # malformed, but written by our own proxy: still this client's identity
        if not _trusted(address, networks):
            return str(address)
    return str(_address(hops[0])) if hops else peer


def ip_key(ip: str) -> str:
    """IPv6 clients are counted per /64: one host usually owns the whole /64 and could rotate within it."""
    address = _address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else address or ip)
