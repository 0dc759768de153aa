"""Where the emulated printer 'prints': <out>/labels/NNNNNN.zpl (+ .png preview) and index.jsonl."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mes_contracts.labels import PrinterLanguage
from printer_emulator.protocol import summarize_zpl

log = logging.getLogger(__name__)

Preview = Callable[[str, int], bytes]
_LABEL_FILE = re.compile(r"^(\d{6})\.(zpl|tspl|ezpl|png)$")


def default_preview(zpl: str, dpi: int) -> bytes:
    """mes_labels renders the PNG; imported late so the emulator still prints when it is missing."""
    from mes_labels.preview import zpl_to_png

    return zpl_to_png(zpl, dpi=dpi)


class LabelStore:
    """Saves each printed program in order; a failing preview never loses the label (the program comes first)."""

    def __init__(
        self,
        out_dir: Path,
        language: PrinterLanguage = PrinterLanguage.ZPL,
        dpi: int = 203,
        preview: Preview | None = default_preview,
    ) -> None:
        self.dir = out_dir / "labels"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.index_path = self.dir / "index.jsonl"
        self.language = language
        self.dpi = dpi
        self.preview = preview if language is PrinterLanguage.ZPL else None  # only ZPL has a renderer
        self._lock = threading.Lock()
        self._saved = threading.Condition(self._lock)
        self._seq = self._last_seq()

    def _last_seq(self) -> int:
        """Continue after what an earlier run printed into the same folder."""
        numbers = [int(m.group(1)) for p in self.dir.iterdir() if (m := _LABEL_FILE.match(p.name))]
        return max(numbers, default=0)

    @property
    def count(self) -> int:
        return self._seq

    def save(self, program: bytes, peer: str, received_at: datetime | None = None) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            seq = self._seq
            name = f"{seq:06d}.{self.language.value.lower()}"
            _write_atomic(self.dir / name, program)
            entry: dict[str, Any] = {
                "seq": seq,
                "received_at": (received_at or datetime.now(UTC)).isoformat(),
                "printed_at": datetime.now(UTC).isoformat(),  # later than received_at for a held label
                "peer": peer,
                "bytes": len(program),
                "file": name,
                "png": None,
            }
            if self.language is PrinterLanguage.ZPL:
                entry.update(summarize_zpl(program))
            if self.preview is not None:
                entry["png"] = self._render(seq, program)
            with open(self.index_path, "a", encoding="utf-8") as index:
                index.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._saved.notify_all()
        log.info("printed label %06d (%s bytes from %s)", seq, len(program), peer)
        return entry

    def _render(self, seq: int, program: bytes) -> str | None:
        assert self.preview is not None
        name = f"{seq:06d}.png"
        try:
            png = self.preview(program.decode("utf-8", errors="replace"), self.dpi)
            _write_atomic(self.dir / name, png)
        except Exception:  # any renderer bug: the label itself is already on disk
            log.exception("preview of label %06d failed; the label is kept without a PNG", seq)
            return None
        return name

    def wait_count(self, count: int, timeout: float) -> bool:
        """Wait until label number `count` is saved (numbers continue across runs in the same folder)."""
        with self._saved:
            return self._saved.wait_for(lambda: self._seq >= count, timeout)

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.index_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def file(self, name: str) -> Path | None:
        """A saved label file by name (only NNNNNN.ext names: nothing else of the disk is served)."""
        if _LABEL_FILE.match(name) is None:
            return None
        path = self.dir / name
        return path if path.is_file() else None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
