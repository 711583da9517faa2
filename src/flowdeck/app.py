"""The composition root: one ASGI app with the API at ``/api``, MCP at ``/mcp`` and a health route,
and its lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from mcp.server.transport_security import TransportSecuritySettings
from sqlalchemy.exc import OperationalError
from starlette.middleware.authentication import AuthenticationMiddleware

from flowdeck import __version__
from flowdeck.api import events as events_api
from flowdeck.api import executions as executions_api
from flowdeck.api import flows as flows_api
from flowdeck.mcp import build_server
from flowdeck.runtime import Runtime
from flowdeck.security import MACHINE_PREFIXES, SameOrigin, TokenBackend, login_routes, unauthorized
from flowdeck.settings import Settings
from flowdeck.web import routes as web

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
RETRY_AFTER_S = 5

log = logging.getLogger("flowdeck")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database stopped, unreachable or locked: 503 and a line in the log, not a traceback."""
    reason = " ".join(str(exc.__cause__ or exc).split())
    log.warning("%s %s: the database is unavailable: %s", request.method, request.url.path, reason)
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if request.url.path.startswith(MACHINE_PREFIXES):
        detail = {"detail": "the database is unavailable: try again shortly"}
        return JSONResponse(detail, status_code=503, headers=headers)
    return web.templates.TemplateResponse(request, "unavailable.html", {}, status_code=503, headers=headers)


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
    app.add_exception_handler(OperationalError, _database_unavailable)

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
        backend = TokenBackend(settings.auth_token)
        login_routes(app, backend)
        app.add_middleware(AuthenticationMiddleware, backend=backend, on_error=unauthorized)
    app.add_middleware(SameOrigin, allowed_hosts=settings.allowed_hosts)
    app.mount("/", mcp_app)  # last: it answers /mcp
    return app
