"""Firmware rules without I/O: version and MCU names, file names, storage keys, digests, download URLs."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

FIRMWARE_PROCESS_ID = "PROC-004"
DEFAULT_TARGET_MCU = "STM32F103"
DOWNLOAD_PATH = "/api/v1/firmware/download/{version}"

# v MAJOR.MINOR.PATCH with an optional -prerelease; a leading "v" is added when missing ("1.2.3" → "v1.2.3").
_VERSION = re.compile(r"^v?(\d{1,6})\.(\d{1,6})\.(\d{1,6})(-[0-9A-Za-z][0-9A-Za-z.-]{0,19})?$")
_MCU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


class InvalidName(ValueError):
    """A version or MCU name that does not follow the rules; the message says which rule."""


def normalize_version(raw: str) -> str:
    """`v1.2.3` (or `1.2.3`, `v1.2.3-rc.1`) → the canonical `v`-prefixed version used in names and URLs."""
    text = raw.strip()
    match = _VERSION.fullmatch(text)
    if match is None:
        raise InvalidName(f"version {raw!r} must look like v1.2.3 (optionally v1.2.3-rc.1)")
    major, minor, patch, suffix = match.groups()
    return f"v{int(major)}.{int(minor)}.{int(patch)}{suffix or ''}"


def normalize_mcu(raw: str) -> str:
    text = raw.strip()
    if not _MCU.fullmatch(text):
        raise InvalidName(f"target_mcu {raw!r} must be 1-40 letters, digits, '_' or '-'")
    return text


def firmware_filename(version: str) -> str:
    """`v1.2.3` → `firmware_v1.2.3.bin`: the seed's example, and the spec's `firmware_v{version}.bin`."""
    return f"firmware_{version}.bin"


def new_storage_key(version: str, upload_id: uuid.UUID | None = None) -> str:
    """A key unique per upload, so a losing concurrent upload can delete its own object and nothing else."""
    return f"{version}/{(upload_id or uuid.uuid4()).hex}/{firmware_filename(version)}"


def download_url(version: str) -> str:
    return DOWNLOAD_PATH.format(version=version)


@dataclass(frozen=True, slots=True)
class Digests:
    size: int
    md5: str
    sha256: str


def digests(data: bytes) -> Digests:
    return Digests(len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True, slots=True)
class FirmwareRecord:
    version: str
    filename: str
    file_size: int
    md5_hash: str
    sha256: str
    target_mcu: str
    storage_key: str
    uploaded_by: str
    uploaded_at: datetime
    active: bool
    notes: str | None = None
    activated_at: datetime | None = None
    activated_by: str | None = None

    def public(self) -> dict[str, object]:
        """What the API shows: everything but the storage key, plus the download URL."""
        return {
            "version": self.version,
            "filename": self.filename,
            "file_size": self.file_size,
            "md5_hash": self.md5_hash,
            "sha256": self.sha256,
            "target_mcu": self.target_mcu,
            "active": self.active,
            "uploaded_by": self.uploaded_by,
            "uploaded_at": self.uploaded_at.isoformat(),
            "activated_by": self.activated_by,
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "notes": self.notes,
            "download_url": download_url(self.version),
        }
