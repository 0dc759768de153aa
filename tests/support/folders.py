"""The three folders of a station's work directory, for the test helpers that drive stations."""

from __future__ import annotations

from pathlib import Path


class WorkFolders:
    """Mixin: `pending/`, `completed/` and `error/` under `self.work_dir`."""

    work_dir: Path

    @property
    def pending(self) -> Path:
        return self.work_dir / "pending"

    @property
    def completed(self) -> Path:
        return self.work_dir / "completed"

    @property
    def error(self) -> Path:
        return self.work_dir / "error"
