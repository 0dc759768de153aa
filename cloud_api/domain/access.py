"""Roles and the acting principal: who may do what (requirements §4.2.8)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"  # production manager
    OPERATOR = "operator"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user with a role, or a station service credential (role None)."""

    username: str
    role: Role | None
    station: str | None = None
