"""The pages' Jinja2 environment (autoescaped: whatever a client sent shows as text), and the pages
the app shows for errors."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from flowdeck import __version__
from flowdeck.web.filters import FILTERS, GLOBALS

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters.update(FILTERS)
templates.env.globals.update(GLOBALS, version=__version__)

STATIC = Path(__file__).parent / "static"


def error_page(
    request: Request, status_code: int, title: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """A page that says what went wrong, for a person (machines get JSON)."""
    context = {"title": title, "message": message, "status_code": status_code}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=status_code, headers=headers
    )
