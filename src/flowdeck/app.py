"""The composition root: one ASGI app with the API at ``/api``, MCP at ``/mcp`` and a health route,
and its lifespan."""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from fastapi import FastAPI
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

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PUBLIC_PATHS = ("/health",)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class _TokenBackend(AuthenticationBackend):
    """Every request but the health route carries ``Authorization: Bearer <FLOWDECK_AUTH_TOKEN>``."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        if conn.url.path in PUBLIC_PATHS:
            return None
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("missing bearer token")
        if not hmac.compare_digest(token.strip().encode(), self._token):
            raise AuthenticationError("invalid token")
        return AuthCredentials(["authenticated"]), SimpleUser("token")


def _unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return JSONResponse(
        {"detail": f"unauthorized: {exc}"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="flowdeck"'},
    )


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
        host=host,
    )
    paths = list(flow_paths)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.running(paths), server.session_manager.run():
            yield

    app = FastAPI(title="flowdeck", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness, for load balancers; needs no token."""
        return {"status": "ok", "version": __version__}

    app.include_router(flows_api.router)
    app.include_router(executions_api.router)
    app.include_router(events_api.router)

    if settings.auth_token:
        app.add_middleware(
            AuthenticationMiddleware, backend=_TokenBackend(settings.auth_token), on_error=_unauthorized
        )
    app.mount("/", mcp_app)  # last: it answers /mcp
    return app
