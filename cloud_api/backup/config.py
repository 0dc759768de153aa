"""The pgBackRest configuration file and the PostgreSQL settings for WAL archiving, rendered from BackupSettings.

Decision: the settings are the only source. Every `mes backup …` / `mes restore` command renders the file and
writes it (atomically, only when it changed) to MES_BACKUP_CONFIG_FILE before running pgbackrest, always passing
`--config`; PostgreSQL's archive_command names the same file, so WAL pushed between two runs uses the same
repository. `mes backup configure` writes it once and prints the postgresql.conf lines.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from cloud_api.backup.settings import BackupSettings

# RPO: PostgreSQL closes (and so archives) a WAL segment at least this often even when little is written.
ARCHIVE_TIMEOUT_S = 300


def _repo_lines(settings: BackupSettings) -> list[str]:
    common = [
        # Time-based retention: full backups older than the window expire (with the incrementals and WAL on them);
        # pgBackRest keeps the newest full that is older, so every point of the window stays restorable.
        "repo1-retention-full-type=time",
        f"repo1-retention-full={settings.retention_days}",
    ]
    if settings.storage == "local":
        return ["repo1-type=posix", f"repo1-path={settings.local_dir}", *common]
    lines = [
        "repo1-type=s3",
        f"repo1-path=/{settings.s3_prefix.strip('/')}",
        f"repo1-s3-bucket={settings.s3_bucket}",
        f"repo1-s3-region={settings.s3_region}",
        *common,
    ]
    endpoint = settings.s3_endpoint_url
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        lines += [f"repo1-s3-endpoint={parts.hostname}", f"repo1-storage-port={parts.port or 443}"]
    else:
        lines.append(f"repo1-s3-endpoint=s3.{settings.s3_region}.amazonaws.com")
    uri_style = settings.s3_uri_style or ("path" if endpoint else "host")
    lines.append(f"repo1-s3-uri-style={uri_style}")
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        lines += [
            f"repo1-s3-key={settings.s3_access_key_id}",
            f"repo1-s3-key-secret={settings.s3_secret_access_key.get_secret_value()}",
        ]
    else:  # an instance role on AWS
        lines.append("repo1-s3-key-type=auto")
    if not settings.s3_verify_tls:
        lines.append("repo1-storage-verify-tls=n")
    if settings.s3_ca_file:
        lines.append(f"repo1-storage-ca-file={settings.s3_ca_file}")
    return lines


def render_config(settings: BackupSettings) -> str:
    """The whole pgbackrest.conf: a [global] section (repository, logs) and one stanza (the cluster)."""
    global_lines = [
        *_repo_lines(settings),
        f"log-path={settings.log_dir}",
        f"lock-path={settings.lock_dir}",
        "log-level-console=warn",
        "log-level-file=info",
        f"process-max={settings.process_max}",
        "start-fast=y",  # a checkpoint now rather than waiting up to checkpoint_timeout
        "compress-type=zst",
    ]
    stanza_lines = [
        f"pg1-path={settings.pg_data_dir}",
        f"pg1-port={settings.pg_port}",
        f"pg1-socket-path={settings.pg_socket_dir}",
    ]
    header = "# Written by `mes backup` from the MES_BACKUP_* settings; edits are overwritten (docs/ops/backup.md)."
    return "\n".join([header, "[global]", *global_lines, "", f"[{settings.stanza}]", *stanza_lines, ""])


def archive_command(settings: BackupSettings, executable: str = "pgbackrest") -> str:
    """What PostgreSQL runs for each finished WAL segment."""
    config = shlex.quote(str(settings.config_file))
    return f"{executable} --config={config} --stanza={settings.stanza} archive-push %p"


def postgres_settings(settings: BackupSettings) -> dict[str, str]:
    """The server settings WAL archiving needs (postgresql.conf or ALTER SYSTEM; archive_mode needs a restart)."""
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": archive_command(settings),
        "archive_timeout": str(ARCHIVE_TIMEOUT_S),
    }


def postgres_conf_lines(settings: BackupSettings) -> list[str]:
    """postgresql.conf syntax of postgres_settings()."""
    return [f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in postgres_settings(settings).items()]


def write_config(settings: BackupSettings, owner_uid: int | None = None, owner_gid: int | None = None) -> bool:
    """Write the file when its text changed (temp + rename, mode 0640: it may hold the S3 secret); True if written.
    `owner_*`: hand it to the OS user pgbackrest runs as (PostgreSQL's archive_command reads it as that user)."""
    text = render_config(settings)
    path = settings.config_file
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(temp, 0o640)
        if owner_uid is not None:
            os.chown(temp, owner_uid, owner_gid if owner_gid is not None else -1)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return True
