"""Korean local time (+09:00) and the ISO 8601 spelling used in every simulated payload."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")


def now_kst() -> datetime:
    """The current time in Korea, truncated to whole seconds as the vendor apps write it."""
    return datetime.now(KST).replace(microsecond=0)


def to_kst(moment: datetime) -> datetime:
    """A naive datetime is taken as Korean local time; an aware one is converted."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=KST)
    return moment.astimezone(KST)


def iso(moment: datetime) -> str:
    """ISO 8601 with the +09:00 offset, whole seconds: `2025-01-10T09:00:00+09:00`."""
    return to_kst(moment).replace(microsecond=0).isoformat()
