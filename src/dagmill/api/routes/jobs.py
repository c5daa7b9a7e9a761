"""`/jobs`: (being built: see /work/wt/notes/ISSUE10.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["jobs"])
