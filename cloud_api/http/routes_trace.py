"""Trace and recall routes: serial and LOT genealogy, component-lot recall, defects, eDHR (issue 13)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
