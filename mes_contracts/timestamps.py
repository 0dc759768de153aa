"""Timestamps written without a UTC offset (a vendor app's local clock): factory time by a configurable policy.

`MES_NAIVE_TIMESTAMPS=assume_local` (default) reads such a timestamp as factory time in `MES_TIMEZONE` (default
Asia/Seoul) and the record keeps a note of the assumption; `reject` refuses it (INVALID_PROCESS_DATA). The
station gateway and the centre read the same two variables, so both take the same decision: give them the same
values at a site.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

POLICY_ENV = "MES_NAIVE_TIMESTAMPS"
ZONE_ENV = "MES_TIMEZONE"
ASSUME_LOCAL = "assume_local"
REJECT = "reject"
DEFAULT_ZONE = "Asia/Seoul"
# The key added to a stored record's process_data when a timestamp of it was read as factory time.
ASSUMED_ZONE_KEY = "timestamp_assumed_timezone"


@dataclass(frozen=True, slots=True)
class NaivePolicy:
    mode: str
    zone: str


def current_policy() -> NaivePolicy:
    """The policy of this process's environment; an invalid value raises ValueError naming the variable."""
    return _policy(os.environ.get(POLICY_ENV, ASSUME_LOCAL), os.environ.get(ZONE_ENV, DEFAULT_ZONE))


@lru_cache(maxsize=8)
def _policy(mode: str, zone: str) -> NaivePolicy:
    mode = mode.strip().lower() or ASSUME_LOCAL
    if mode not in (ASSUME_LOCAL, REJECT):
        raise ValueError(f"{POLICY_ENV}={mode!r}: must be {ASSUME_LOCAL} or {REJECT}")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{ZONE_ENV}={zone!r}: unknown time zone") from error
    return NaivePolicy(mode, zone)


_ASSUMED: ContextVar[list[str] | None] = ContextVar("mes_assumed_zones", default=None)


@contextmanager
def noting_assumptions() -> Iterator[list[str]]:
    """Inside the block, every timestamp read as factory time adds its zone to the yielded list."""
    noted: list[str] = []
    token = _ASSUMED.set(noted)
    try:
        yield noted
    finally:
        _ASSUMED.reset(token)


def factory_time(value: datetime) -> datetime:
    """An aware datetime as is; a naive one as factory time, or refused, by the policy."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value
    policy = current_policy()
    if policy.mode == REJECT:
        raise ValueError(f"timestamp without a UTC offset ({POLICY_ENV}={REJECT}); write e.g. +09:00 or Z")
    noted = _ASSUMED.get()
    if noted is not None:
        noted.append(policy.zone)
    return value.replace(tzinfo=ZoneInfo(policy.zone))


# Use in place of pydantic's AwareDatetime for times a station writes.
FactoryDatetime = Annotated[datetime, AfterValidator(factory_time)]
