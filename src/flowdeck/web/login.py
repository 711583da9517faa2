"""The login page: the one form of the UI that changes something (it sets the token's cookie). It
carries a token of its own, matched against a cookie set with the form (double submit), so that no
other page can post it."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.responses import JSONResponse, Response

from flowdeck.security import COOKIE, FORM_COOKIE, TokenBackend, set_cookie
from flowdeck.web.rendering import templates


def login_router(backend: TokenBackend) -> APIRouter:
    """``/login``, checking tokens with ``backend``."""
    router = APIRouter(include_in_schema=False)

    def form(request: Request, next: str, *, failed: bool, status_code: int = 200) -> Response:
        # one per browser until it signs in: pages opened side by side (or a favicon request that
        # lands here) must not void each other's forms
        form_token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(24)
        context = {"next": next, "failed": failed, "form_token": form_token}
        response = templates.TemplateResponse(request, "login.html", context, status_code=status_code)
        set_cookie(response, request, FORM_COOKIE, form_token, path="/login")
        return response

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        return form(request, next, failed=False)

    @router.post("/login", response_model=None)
    def login(
        request: Request, token: str = Form(""), next: str = Form("/"), form_token: str = Form("")
    ) -> Response:
        expected = request.cookies.get(FORM_COOKIE, "")
        if not (expected and hmac.compare_digest(form_token.encode(), expected.encode())):
            return JSONResponse(
                {"detail": "refused: this form was not sent from the login page"}, status_code=403
            )
        if not backend.matches(token):
            return form(request, next, failed=True, status_code=401)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        set_cookie(response, request, COOKIE, token.strip())
        response.delete_cookie(FORM_COOKIE, path="/login")
        return response

    return router
