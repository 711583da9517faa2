"""Who may use the server, and from where.

- **The token** (``FLOWDECK_AUTH_TOKEN``): every request but the health route and the login page
  carries it, as ``Authorization: Bearer <token>`` or, from a browser, in the HttpOnly,
  SameSite=Strict cookie the login sets (Secure under TLS). Compared in constant time.
- **Cross-site requests**: a page on another site can make a browser send requests here, with its
  cookie when the two are the same *site* (another port of localhost, say). A request that changes
  something (any method but GET, HEAD, OPTIONS) is refused when the browser says it comes from
  elsewhere (``Origin`` or ``Sec-Fetch-Site``); programs, which send neither, are not affected.
  ``/mcp`` has the MCP SDK's own Host and Origin checks instead (which let browser-based MCP
  clients on loopback in).
- **Forms**: the login form carries a token of its own, matched against a cookie set with the form
  (double submit), so that no other page can post it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flowdeck.web.routes import templates

PUBLIC_PATHS = ("/health", "/login")
PUBLIC_PREFIXES = ("/static/",)
COOKIE = "flowdeck_token"
FORM_COOKIE = "flowdeck_form"
MACHINE_PREFIXES = ("/api", "/mcp", "/openapi.json", "/docs")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TokenBackend(AuthenticationBackend):
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(token.strip().encode(), self._token)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        path = conn.url.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            token = conn.cookies.get(COOKIE, "")
            if not token:
                raise AuthenticationError("missing bearer token")
        if not self.matches(token):
            raise AuthenticationError("invalid token")
        return AuthCredentials(["authenticated"]), SimpleUser("token")


def unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """A machine gets 401; a person at a page gets the login form."""
    if not conn.url.path.startswith(MACHINE_PREFIXES):
        return RedirectResponse(f"/login?next={quote(conn.url.path)}", status_code=303)
    return JSONResponse(
        {"detail": f"unauthorized: {exc}"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="flowdeck"'},
    )


class SameOrigin:
    """Refuses requests that change something when a browser says they come from another origin.
    ``allowed_hosts`` are the names the server is also reached by (behind a proxy)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_hosts = frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        changes = scope["type"] == "http" and scope["method"] not in SAFE_METHODS
        if changes and not scope["path"].startswith("/mcp") and not self._from_here(scope):
            response = JSONResponse({"detail": "refused: a request from another site"}, status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _from_here(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-origin request: browsers send Origin with those
        parts = urlsplit(origin)
        return parts.netloc == headers.get("host") or parts.hostname in self.allowed_hosts


def login_routes(app: FastAPI, backend: TokenBackend) -> None:
    """The login page: the one form of the UI that changes something (it sets the cookie)."""

    def form(request: Request, next: str, *, failed: bool, status_code: int = 200) -> Response:
        # one per browser until it signs in: pages opened side by side (or a favicon request that
        # lands here) must not void each other's forms
        form_token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(24)
        context = {"next": next, "failed": failed, "form_token": form_token}
        response = templates.TemplateResponse(request, "login.html", context, status_code=status_code)
        _set_cookie(response, request, FORM_COOKIE, form_token, path="/login")
        return response

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        return form(request, next, failed=False)

    @app.post("/login", include_in_schema=False, response_model=None)
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
        _set_cookie(response, request, COOKIE, token.strip())
        response.delete_cookie(FORM_COOKIE, path="/login")
        return response


def _set_cookie(response: Response, request: Request, name: str, value: str, path: str = "/") -> None:
    """HttpOnly, SameSite=Strict, and Secure when the request came over TLS."""
    secure = request.url.scheme == "https"
    response.set_cookie(name, value, path=path, httponly=True, samesite="strict", secure=secure)
