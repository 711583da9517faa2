"""The composition root: one ASGI app with the API at ``/api``, MCP at ``/mcp``, the pages and a
health route, its lifespan, and the one place where errors become HTTP answers."""

from __future__ import annotations

import contextlib
import gc
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
from flowdeck.api import event_routes, execution_routes, flow_routes, metrics_routes
from flowdeck.errors import (
    Conflict,
    DatabaseUnavailable,
    FlowdeckError,
    InvalidFlow,
    InvalidQuery,
    NameTaken,
    NotFound,
    RecordingFailed,
    count,
)
from flowdeck.mcp import build_server
from flowdeck.mcp.event_store import RecentEvents, give_each_session_its_events
from flowdeck.runtime import Runtime
from flowdeck.security import SameOrigin, TokenBackend, is_machine, unauthorized
from flowdeck.settings import Settings
from flowdeck.states import Transport
from flowdeck.web import pages
from flowdeck.web.login import login_router
from flowdeck.web.rendering import STATIC, error_page

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
RETRY_AFTER_S = 5
# how soon a client whose call's stream dropped is told to reconnect
RECONNECT_MS = 1000

log = logging.getLogger("flowdeck")

# what each kind of error is, over HTTP: its status and, on a page, its title
_STATUS: list[tuple[type[FlowdeckError], int, str]] = [
    (NotFound, 404, "Not found"),
    (NameTaken, 409, "Name taken"),
    (Conflict, 409, "That can't be done now"),
    (InvalidFlow, 422, "The flow has problems"),
    (InvalidQuery, 422, "That can't be shown"),
    (DatabaseUnavailable, 503, "The database is unavailable"),
    (RecordingFailed, 503, "The execution could not be recorded"),
    (FlowdeckError, 400, "Refused"),
]


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


async def _flowdeck_error(request: Request, exc: Exception) -> Response:
    """A :class:`FlowdeckError` as its status: JSON ``{"detail"}`` for machines (with every problem
    of an invalid flow), a page for people."""
    status_code, title = next((code, title) for kind, code, title in _STATUS if isinstance(exc, kind))
    if not is_machine(request.url.path):
        return error_page(request, status_code, title, str(exc))
    if isinstance(exc, InvalidFlow):
        body = {
            "detail": f"the flow has {count(len(exc.problems), 'problem')}",
            "problems": [{"place": p.place, "message": p.message} for p in exc.problems],
        }
        return JSONResponse(body, status_code=status_code)
    return JSONResponse({"detail": str(exc)}, status_code=status_code)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database stopped, unreachable or locked: 503 and a line in the log, not a traceback."""
    reason = " ".join(str(exc.__cause__ or exc).split())
    log.warning("%s %s: the database is unavailable: %s", request.method, request.url.path, reason)
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    if is_machine(request.url.path):
        detail = {"detail": "the database is unavailable: try again shortly"}
        return JSONResponse(detail, status_code=503, headers=headers)
    message = (
        "flowdeck can't reach its database just now. Nothing recorded is lost: reload this page in a few"
        " seconds."
    )
    return error_page(request, 503, "The database is unavailable", message, headers)


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
    server = build_server(
        runtime.catalog, runtime.tracker, transport=Transport.HTTP, exposures=runtime.exposures
    )
    events = RecentEvents()  # a call's stream that drops is resumed from here (Last-Event-ID)
    mcp_app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=stateless,
        event_store=None if stateless else events.for_session(""),
        retry_interval=RECONNECT_MS,
        transport_security=_transport_security(host, settings.allowed_hosts),
        max_request_body_size=settings.max_request_bytes,
        host=host,
    )
    if not stateless:
        give_each_session_its_events(server.session_manager, events)
    paths = list(flow_paths)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime.running(paths), server.session_manager.run():
            # what start-up made lives as long as the process: out of the collector's sight, so that
            # a full collection (set off by a request that makes many objects) walks only the rest
            gc.freeze()
            yield

    # max_body_size: a client can't make the server hold more than this of one request (413)
    app = FastAPI(
        title="flowdeck", version=__version__, lifespan=lifespan, max_body_size=settings.max_request_bytes
    )
    app.state.runtime = runtime
    app.add_exception_handler(FlowdeckError, _flowdeck_error)
    app.add_exception_handler(OperationalError, _database_unavailable)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness, for load balancers; needs no token."""
        return {"status": "ok", "version": __version__}

    app.include_router(flow_routes.router)
    app.include_router(execution_routes.router)
    app.include_router(event_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    if settings.auth_token:
        backend = TokenBackend(settings.auth_token)
        app.include_router(login_router(backend))
        app.add_middleware(AuthenticationMiddleware, backend=backend, on_error=unauthorized)
    app.add_middleware(SameOrigin, allowed_hosts=settings.allowed_hosts)
    app.mount("/", mcp_app)  # last: it answers /mcp
    return app
