"""Firmware rules without I/O: versions, file names, keys, error rendering, Bearer parsing."""

from __future__ import annotations

import pytest

from cloud_api.domain.errors import DomainError
from cloud_api.firmware.domain import (
    InvalidName,
    digests,
    download_url,
    firmware_filename,
    new_storage_key,
    normalize_mcu,
    normalize_version,
)
from cloud_api.firmware.storage import check_key
from cloud_api.firmware.tokens import bearer_token, hash_token
from mes_contracts.errors import ErrorCode


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("v1.2.3", "v1.2.3"), ("1.2.3", "v1.2.3"), (" v01.002.3 ", "v1.2.3"), ("v2.0.0-rc.1", "v2.0.0-rc.1")],
)
def test_versions_are_canonical_with_a_leading_v(raw: str, canonical: str) -> None:
    assert normalize_version(raw) == canonical


@pytest.mark.parametrize("raw", ["", "v1.2", "v1.2.3.4", "latest", "v1.2.3/../x", "v1.2.3 beta", "V1.2.3", "v1.2.3+b"])
def test_bad_versions_are_refused(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalize_version(raw)


def test_names_follow_the_seed_example() -> None:
    assert firmware_filename("v1.2.3") == "firmware_v1.2.3.bin"
    assert download_url("v1.2.3") == "/api/v1/firmware/download/v1.2.3"
    key = new_storage_key("v1.2.3")
    assert key.startswith("v1.2.3/") and key.endswith("/firmware_v1.2.3.bin") and check_key(key) == key
    assert new_storage_key("v1.2.3") != key
    assert normalize_mcu("STM32F103") == "STM32F103"
    with pytest.raises(InvalidName):
        normalize_mcu("STM32 F103")


def test_digests_match_the_seed_example() -> None:
    sums = digests(b"hello")
    assert sums.size == 5 and sums.md5 == "5d41402abc4b2a76b9719d911017c592"  # the seed's md5_hash example


def test_firmware_error_codes_have_their_status_and_messages() -> None:
    error = DomainError(ErrorCode.DUPLICATE_FIRMWARE_VERSION, {"version": "v1.2.3"})
    assert error.http_status == 409 and error.message() == "이미 등록된 펌웨어 버전입니다"
    assert DomainError(ErrorCode.UNAUTHORIZED).message("en") == "Authentication required"
    assert DomainError(ErrorCode.FIRMWARE_NOT_FOUND).http_status == 404


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token(None) is None and bearer_token("Bearer") is None and bearer_token("Basic abc") is None
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
