"""QA measurement read API: trends, raw measurements, downsampled curves (issue 14)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
