"""The site's Mosquitto settings, in one place: `mes broker init` (site) and the local/test broker both render them.

Only the lines that decide behaviour (persistence, autosave, queue limits, logging, security plugin) live here, so
the local stack cannot drift from a site; listeners, paths and the run-as user differ per installation.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

# Not 0 ("no limit"): Mosquitto 2.0.11 then disconnects an MQTT 5 client after every refused publish (its
# quota check `out_packet_count >= max_queued_messages` is always true for 0). RAM is the real bound anyway.
MAX_QUEUED_MESSAGES = 1_000_000
# Seconds between saves of sessions, queued and retained messages: a kill -9 loses at most this much.
AUTOSAVE_INTERVAL_S = 30
DYNSEC_PLUGIN_NAME = "mosquitto_dynamic_security.so"
DEFAULT_DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu") / DYNSEC_PLUGIN_NAME  # Debian/Ubuntu amd64 package
PLUGIN_ENV = "MES_MOSQUITTO_DYNSEC_PLUGIN"
_PLUGIN_GLOBS = ("/usr/lib/*-linux-gnu/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/", "/opt/homebrew/lib/")


def security_lines(plugin: Path, dynsec_file: Path) -> list[str]:
    """Accounts, client-id binding and per-topic publish/subscribe rules come from the dynamic-security plugin."""
    return [
        "# Accounts and rules: Mosquitto's dynamic-security plugin, file by `mes broker` (mosquitto/README.md).",
        "# Unlike acl_file it checks SUBSCRIBE filters (no station can join '$share/mes-ingestor/...') and binds a",
        "# station account to its gateway's client id (no station can take over another client's session).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {dynsec_file}",
    ]


def persistence_lines(persistence_dir: Path, autosave_interval: int = AUTOSAVE_INTERVAL_S) -> list[str]:
    return [
        "# -- never lose a queued message",
        "# The ingestor keeps a persistent session (clean start off, session expiry MES_INGESTOR_SESSION_EXPIRY_S,",
        "# 7 days by default): while it is away, its QoS 1 messages queue here, in memory and on disk.",
        "persistence true",
        f"persistence_location {persistence_dir}/",
        "# Saved every autosave_interval seconds and at a clean stop: a kill -9 keeps sessions and retained states.",
        f"autosave_interval {autosave_interval}",
        "# Effectively no limit, so a long ingestor outage queues everything instead of silently dropping the",
        "# overflow; RAM is the real bound (size the server for the backlog it must survive). Not 0 (= no limit):",
        "# with 0, Mosquitto 2.0.11 disconnects an MQTT 5 client after any publish it refuses (ACL).",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        "# Sessions nobody resumes (MQTT 3.1.1 clean session off, v5 without expiry) are dropped after 14 days,",
        "# longer than the ingestor's own session expiry.",
        "persistent_client_expiration 14d",
        "",
        "# -- latency",
        "set_tcp_nodelay true",
    ]


def logging_lines(log_file: Path) -> list[str]:
    return [
        "# -- logging",
        f"log_dest file {log_file}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "# Every SUBSCRIBE with its client id: who tried to join '$share/mes-ingestor/...' (see mosquitto/README.md).",
        "log_type subscribe",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]


def find_dynsec_plugin() -> Path | None:
    """The plugin shipped with the broker: $MES_MOSQUITTO_DYNSEC_PLUGIN, else the usual library directories."""
    explicit = os.environ.get(PLUGIN_ENV)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    for pattern in _PLUGIN_GLOBS:
        for found in sorted(glob.glob(pattern + DYNSEC_PLUGIN_NAME)):
            return Path(found)
    return None
