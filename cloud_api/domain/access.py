"""Roles, the acting principal and who may call a route: the access rules without I/O (requirements §4.2.8)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mes_contracts.workers import WORKER_ID_PATTERN, is_valid_worker_id


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"  # production manager
    OPERATOR = "operator"
    VIEWER = "viewer"


# Each role may do what the roles below it may: viewer < operator < manager < admin.
VIEWERS = frozenset({Role.ADMIN, Role.MANAGER, Role.OPERATOR, Role.VIEWER})
OPERATORS = frozenset({Role.ADMIN, Role.MANAGER, Role.OPERATOR})
MANAGERS = frozenset({Role.ADMIN, Role.MANAGER})
ADMINS = frozenset({Role.ADMIN})

# Usernames are also the worker ids stations send (operators), so they follow the worker-id rule.
USERNAME_PATTERN = WORKER_ID_PATTERN
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128  # argon2 takes any length; a cap keeps a login from becoming a CPU sink


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user with a role, or a station service credential (role None)."""

    username: str
    role: Role | None
    station: str | None = None
    session_id: str | None = None  # the refresh-token family an access token belongs to
    must_change_password: bool = False


@dataclass(frozen=True, slots=True)
class RouteAccess:
    """Who may call one route: anyone (public), a station token (station), or users with one of `roles`."""

    roles: frozenset[Role] = frozenset()
    public: bool = False
    station: bool = False
    during_password_change: bool = False  # still allowed while the user must change the password

    def admits(self, role: Role | None) -> bool:
        return self.public or (role is not None and role in self.roles)

    def label(self) -> str:
        if self.public:
            return "public"
        if self.station:
            return "station token"
        return ", ".join(role.value for role in Role if role in self.roles)


def password_problems(password: str, username: str, current: str | None = None) -> list[str]:
    """Why a new password is refused (empty when it is acceptable); messages name the field like 422 errors."""
    problems = []
    if len(password) < PASSWORD_MIN_LENGTH:
        problems.append(f"new_password: at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        problems.append(f"new_password: at most {PASSWORD_MAX_LENGTH} characters")
    if password.strip().casefold() == username.strip().casefold():
        problems.append("new_password: must differ from the user name")
    if current is not None and password == current:
        problems.append("new_password: must differ from the current password")
    if password != password.strip():
        problems.append("new_password: no leading or trailing blanks")
    return problems


def valid_username(username: str) -> bool:
    return is_valid_worker_id(username)
