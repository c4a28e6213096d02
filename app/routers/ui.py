"""/ui: the dashboard, static files that talk to the REST API (no front-end build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

UI_DIRECTORY = Path(__file__).resolve().parent.parent / "ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui")
async def ui() -> RedirectResponse:
    return RedirectResponse("/ui/")


static = StaticFiles(directory=UI_DIRECTORY, html=True)
