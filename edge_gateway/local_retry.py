"""Names waiting out a local retry in pending/ (a failed commit or move): each with its deadline, soonest first."""

from __future__ import annotations

import heapq


class LocalRetry:
    """A name is due once its latest deadline has passed; an earlier deadline of the same name is void."""

    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __contains__(self, name: object) -> bool:
        return name in self._deadlines

    def __len__(self) -> int:
        return len(self._deadlines)

    def schedule(self, name: str, deadline: float) -> None:
        self._deadlines[name] = deadline
        heapq.heappush(self._heap, (deadline, name))

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[str]:
        """The names whose deadline has come, taken out."""
        names = []
        while self._heap and self._heap[0][0] <= now:
            deadline, name = heapq.heappop(self._heap)
            if self._deadlines.get(name) == deadline:
                del self._deadlines[name]
                names.append(name)
        return names
