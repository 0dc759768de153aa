"""FirmwareStorage: one async interface over where binaries live (local disk or S3), chosen by settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.firmware.storage_keys import CHUNK_SIZE, ObjectMissing, check_key

__all__ = ["CHUNK_SIZE", "FirmwareStorage", "LocalDiskStorage", "ObjectMissing", "check_key", "make_storage"]


class FirmwareStorage(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; raises ObjectMissing on the first iteration when absent."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...


class LocalDiskStorage:
    """Objects as files under `root`; writes are atomic (temporary file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as sink:
                sink.write(data)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            source = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        try:
            while chunk := await asyncio.to_thread(source.read, chunk_size):
                yield chunk
        finally:
            source.close()

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._remove, self._path(key))

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and self.root in parent.parents:
            try:
                parent.rmdir()  # only empty folders go
            except OSError:
                break
            parent = parent.parent


def make_storage(settings: FirmwareSettings) -> FirmwareStorage:
    if settings.storage == "s3":
        from cloud_api.firmware.storage_s3 import S3Storage, make_s3_client

        assert settings.s3_bucket is not None  # checked by the settings validator
        return S3Storage(settings.s3_bucket, make_s3_client(settings), settings.s3_prefix)
    return LocalDiskStorage(settings.local_dir.expanduser().resolve())
