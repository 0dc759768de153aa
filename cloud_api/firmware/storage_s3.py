"""S3Storage: FirmwareStorage on an S3 bucket (AWS, MinIO, moto) through a boto3 client run in threads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from cloud_api.firmware.settings import FirmwareSettings
from cloud_api.firmware.storage_keys import CHUNK_SIZE, ObjectMissing, check_key

_MISSING = {"404", "NoSuchKey", "NotFound"}


def make_s3_client(settings: FirmwareSettings) -> Any:
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )


def _is_missing(error: Exception) -> bool:
    response = getattr(error, "response", None)
    return isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in _MISSING


class S3Storage:
    """Keys are stored under `prefix` in `bucket`; `client` is a boto3 S3 client (thread-safe)."""

    def __init__(self, bucket: str, client: Any, prefix: str = "") -> None:
        self.bucket = bucket
        self.client = client
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType="application/octet-stream",
        )

    async def _get_object(self, key: str) -> Any:
        try:
            return await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except Exception as error:
            if _is_missing(error):
                raise ObjectMissing(key) from None
            raise

    async def get(self, key: str) -> bytes:
        body = (await self._get_object(key))["Body"]
        try:
            data: bytes = await asyncio.to_thread(body.read)
            return data
        finally:
            body.close()

    async def open(self, key: str, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        body = (await self._get_object(key))["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except Exception as error:
            if _is_missing(error):
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))
