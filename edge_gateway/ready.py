"""A file the pickup has finished looking at, and its verdict: a completion to send or a rejection."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge_gateway.pending_io import refusal
from edge_gateway.stability import FileStat, Probe
from edge_gateway.validation import Completion, Rejection, check_completion
from mes_contracts.completion import parse_completion_file_name
from mes_contracts.errors import ErrorCode

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadyFile:
    """One name's bytes as read (or the rejection met while reading), queued for the pickup's workers."""

    name: str
    data: bytes
    parsed_ok: bool
    parsed: Any
    stat: FileStat | None = None
    parse_error: str | None = None
    rejection: Rejection | None = None  # refused while looking at it (not a regular file, too large…)

    @classmethod
    def of(cls, probe: Probe) -> ReadyFile:
        return cls(
            probe.name, probe.data or b"", probe.parsed_ok, probe.parsed, probe.stat, probe.parse_error, probe.rejection
        )


def completion_payload(completion: Completion) -> dict[str, Any]:
    """`CompletionEvent(...).model_dump(mode="json")` without a second validation pass (issue 18): the record is
    the file's parsed JSON already checked by `check_completion`, the name matched the completion-name pattern
    and the hash is hashlib's hex digest, so the model could only copy them."""
    return {"record": completion.record, "file_name": completion.file_name, "sha256": completion.sha256}


def verdict(item: ReadyFile) -> Completion | Rejection:
    """The file's verdict; an exception while checking it (a bug, memory) refuses this file only."""
    try:
        if item.rejection is not None:
            return item.rejection
        if item.parsed_ok:
            return check_completion(item.name, item.data, item.parsed)
        if parse_completion_file_name(item.name) is None:  # the name's verdict comes first (spec order)
            return check_completion(item.name, item.data)
        return Rejection.of(ErrorCode.INVALID_JSON, {"error": item.parse_error or "not valid JSON"})
    except Exception as error:
        logger.exception("unexpected failure checking %s", item.name)
        reason = "nested too deeply" if isinstance(error, RecursionError) else repr(error)
        return refusal(item.name, f"could not be checked: {reason}")
