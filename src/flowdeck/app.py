"""The composition root: one ASGI app with the API at ``/api``, MCP at ``/mcp`` and a health route,
and its lifespan."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from mcp.server.transport_security import TransportSecuritySettings
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from flowdeck import __version__
from flowdeck.api import events as events_api
from flowdeck.api import executions as executions_api
from flowdeck.api import flows as flows_api
from flowdeck.mcp import build_server
from flowdeck.runtime import Runtime
from flowdeck.settings import Settings
from flowdeck.web import routes as web
from flowdeck.web.routes import templates

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PUBLIC_PATHS = ("/health", "/login")
PUBLIC_PREFIXES = ("/static/",)
COOKIE = "flowdeck_token"
MACHINE_PREFIXES = ("/api", "/mcp", "/openapi.json", "/docs")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class _TokenBackend(AuthenticationBackend):
    """Every request but the health route and the login page carries the token: as
    ``Authorization: Bearer <FLOWDECK_AUTH_TOKEN>``, or, from a browser, in the cookie the login sets."""

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


def _unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    if not conn.url.path.startswith(MACHINE_PREFIXES):  # a person at a page: the login form
        return RedirectResponse(f"/login?next={quote(conn.url.path)}", status_code=303)
    return JSONResponse(
        {"detail": f"unauthorized: {exc}"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="flowdeck"'},
    )


def _login_routes(app: FastAPI, backend: _TokenBackend) -> None:
    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {"next": next, "failed": False})

    @app.post("/login", include_in_schema=False, response_model=None)
    def login(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
        if not backend.matches(token):
            context = {"next": next, "failed": True}
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict", secure=secure)
        return response


def _transport_security(host: str, extra_hosts: Iterable[str]) -> TransportSecuritySettings:
    """Only these Host and Origin headers reach /mcp: a page on another site can't drive it through
    the user's browser (DNS rebinding)."""
    hosts = ["127.0.0.1", "localhost", "[::1]"]
    if host not in LOOPBACK_HOSTS and host not in ("0.0.0.0", "::"):
        hosts.append(f"[{host}]" if ":" in host else host)
    hosts.extend(extra_hosts)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[pattern for name in hosts for pattern in (name, f"{name}:*")],
        allowed_origins=[
            f"{scheme}://{name}{port}"
            for name in hosts
            for scheme in ("http", "https")
            for port in ("", ":*")
        ],
    )


def create_app(
    settings: Settings,
    *,
    flow_paths: Iterable[Path] = (),
    host: str = "127.0.0.1",
    stateless: bool = False,
) -> FastAPI:
    """The app; nothing touches the database until its lifespan starts."""
    runtime = Runtime.create(settings, kind="serve")
    server = build_server(runtime.catalog, runtime.tracker, runtime.changes, transport="http")
    mcp_app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        transport_security=_transport_security(host, settings.allowed_hosts),
        max_request_body_size=settings.max_request_bytes,
        host=host,
    )
    paths = list(flow_paths)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.running(paths), server.session_manager.run():
            yield

    # max_body_size: a client can't make the server hold more than this of one request (413)
    app = FastAPI(
        title="flowdeck", version=__version__, lifespan=lifespan, max_body_size=settings.max_request_bytes
    )
    app.state.runtime = runtime

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness, for load balancers; needs no token."""
        return {"status": "ok", "version": __version__}

    app.include_router(flows_api.router)
    app.include_router(executions_api.router)
    app.include_router(events_api.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=Path(web.__file__).parent / "static"), name="static")

    if settings.auth_token:
        backend = _TokenBackend(settings.auth_token)
        _login_routes(app, backend)
        app.add_middleware(AuthenticationMiddleware, backend=backend, on_error=_unauthorized)
    app.mount("/", mcp_app)  # last: it answers /mcp
    return app
