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

The login page itself lives with the other pages (:mod:`flowdeck.web.login`).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PATHS = ("/health", "/login")
PUBLIC_PREFIXES = ("/static/",)
COOKIE = "flowdeck_token"
FORM_COOKIE = "flowdeck_form"
MACHINE_PREFIXES = ("/api", "/mcp", "/metrics", "/openapi.json", "/docs")
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


def is_machine(path: str) -> bool:
    """Whether a path is for programs (JSON answers) rather than for people (pages)."""
    return path.startswith(MACHINE_PREFIXES)


def unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """A machine gets 401; a person at a page gets the login form."""
    if not is_machine(conn.url.path):
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


def set_cookie(response: Response, request: Request, name: str, value: str, path: str = "/") -> None:
    """HttpOnly, SameSite=Strict, and Secure when the request came over TLS."""
    secure = request.url.scheme == "https"
    response.set_cookie(name, value, path=path, httponly=True, samesite="strict", secure=secure)
