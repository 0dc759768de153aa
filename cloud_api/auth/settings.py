"""Authentication settings from MES_* environment variables; a weak JWT secret stops the API at start."""

from __future__ import annotations

import logging

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

# Only ever accepted with MES_DEV_MODE=true; anyone can read it here, so it must never sign a real token.
DEV_JWT_SECRET = "withforce-mes-development-only-jwt-secret-never-in-production"
MIN_SECRET_BYTES = 32
GENERATE_HINT = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def _problem(name: str, secret: SecretStr | None) -> str | None:
    if secret is None:
        return None
    value = secret.get_secret_value()
    if value == DEV_JWT_SECRET:
        return f"{name} is the development default"
    if len(value.encode("utf-8")) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes"
    return None


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MES_", extra="ignore")

    jwt_secret: SecretStr | None = Field(default=None, description="HS256 key of the access tokens (>= 32 bytes)")
    jwt_previous_secret: SecretStr | None = Field(
        default=None, description="the key before a rotation: still verifies tokens, never signs"
    )
    dev_mode: bool = Field(default=False, description="accept a missing, short or development JWT secret")
    jwt_issuer: str = Field(default="withforce-mes", min_length=1)
    jwt_audience: str = Field(default="withforce-mes-api", min_length=1)
    access_token_ttl_s: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    refresh_token_ttl_s: int = Field(default=7 * 24 * 3600, ge=300, le=90 * 24 * 3600)
    jwt_leeway_s: int = Field(default=30, ge=0, le=300, description="clock skew tolerated on exp/nbf/iat")
    refresh_grace_s: float = Field(
        default=10.0, ge=0, le=120, description="a refresh token used again this soon gets the same successor"
    )
    # Sign-in bursts (issue 18, Locust): password hashes run at most this many at once, on threads niced this much
    # (Linux), and past login_queue_max waiting a sign-in is refused at once with 503 + Retry-After (auth/hash_gate).
    password_hash_workers: int = Field(default=1, ge=1, le=32, description="argon2 hashes computed at once")
    password_hash_nice: int = Field(default=10, ge=0, le=19, description="nice value of the hashing threads")
    login_queue_max: int = Field(default=200, ge=0, le=10_000, description="sign-ins waiting for a hash at most")

    @model_validator(mode="after")
    def _strong_secret(self) -> AuthSettings:
        problems = [
            p
            for p in (
                _problem("MES_JWT_SECRET", self.jwt_secret),
                _problem("MES_JWT_PREVIOUS_SECRET", self.jwt_previous_secret),
            )
            if p
        ]
        if self.jwt_secret is None:
            problems.insert(0, "MES_JWT_SECRET is not set")
        if problems and not self.dev_mode:
            raise ValueError("; ".join(problems) + f" ({GENERATE_HINT}; or MES_DEV_MODE=true on a developer machine)")
        if problems:
            log.warning(
                "MES_DEV_MODE: accepting a weak JWT secret (%s); never run a factory like this", "; ".join(problems)
            )
        return self

    @property
    def signing_key(self) -> str:
        return self.jwt_secret.get_secret_value() if self.jwt_secret is not None else DEV_JWT_SECRET

    @property
    def verification_keys(self) -> list[str]:
        """The current key first, then the previous one during a rotation."""
        keys = [self.signing_key]
        if self.jwt_previous_secret is not None:
            keys.append(self.jwt_previous_secret.get_secret_value())
        return keys


def load_auth_settings() -> AuthSettings:
    """AuthSettings from the environment, or stop the process with a message that says what to fix."""
    try:
        return AuthSettings()
    except ValidationError as error:
        details = "; ".join(str(item.get("msg", "")).removeprefix("Value error, ") for item in error.errors())
        raise SystemExit(f"refusing to start: {details}") from None
