"""Rate-limit, trusted-proxy, body-size and CORS settings from MES_* environment variables, validated at start."""

from __future__ import annotations

import ipaddress
import json
from functools import cached_property
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(value: object) -> object:
    """Comma- or space-separated lists read better in an env file than JSON arrays; JSON is still accepted."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part for part in text.replace(",", " ").split() if part]
    return value


class LimitSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MES_", extra="ignore")

    rate_limit_per_minute: int = Field(default=100, ge=0, description="requests per client IP per minute; 0 = off")
    rate_limit_user_per_minute: int = Field(default=600, ge=0, description="requests per user per minute; 0 = off")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs of reverse proxies whose X-Forwarded-For is believed"
    )
    rate_limit_exempt_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/health", "/metrics"], description="paths never rate-limited"
    )
    login_max_failures_per_user_ip: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=20, ge=1)
    login_failure_window_s: int = Field(default=15 * 60, ge=1)
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1,
        description="largest request body (firmware upload: MES_FIRMWARE_MAX_SIZE_BYTES plus multipart overhead)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS; empty = no CORS headers at all"
    )

    @field_validator("trusted_proxies", "rate_limit_exempt_paths", "cors_origins", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as error:
                raise ValueError(f"MES_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR") from error
        return value

    @field_validator("rate_limit_exempt_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.startswith("/"):
                raise ValueError(f"MES_RATE_LIMIT_EXEMPT_PATHS: {item!r} must start with /")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "*" and not item.startswith(("http://", "https://")):
                raise ValueError(f"MES_CORS_ORIGINS: {item!r} must be an http(s) origin")
        return [item.rstrip("/") for item in value]

    @cached_property  # read on every request
    def proxy_networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)


def limit_settings(state: Any) -> LimitSettings:
    """The app's validated settings, kept by install_limits at start: a request never reads the environment."""
    settings: LimitSettings = state.limit_settings
    return settings
