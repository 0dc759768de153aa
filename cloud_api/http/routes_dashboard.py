"""Live production view: today's board and the Server-Sent Events channel (issue 13)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
