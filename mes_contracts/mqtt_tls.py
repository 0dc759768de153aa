"""How every MES process opens its broker link over TLS: one client context, the same rules on both sides."""

from __future__ import annotations

import ssl
from pathlib import Path

TLS_PORT = 8883  # MQTT over TLS (IANA); the plain listener is 1883


def uses_tls(enabled: bool, ca_file: Path | None) -> bool:
    return enabled or ca_file is not None


def broker_port(port: int, port_given: bool, tls: bool) -> int:
    """The port setting, or 8883 when TLS is on and no port was given (a TLS handshake on 1883 only fails)."""
    return TLS_PORT if tls and not port_given else port


def client_tls_context(enabled: bool, ca_file: Path | None) -> ssl.SSLContext | None:
    """None for plain MQTT; TLS when enabled or when the broker's CA file is given (else the system's CAs).

    TLS 1.2 or newer, and the broker's certificate and host name are always checked: a station that cannot
    verify the broker must not hand it its password.
    """
    if not uses_tls(enabled, ca_file):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
