"""Every ``FLOWDECK_*`` setting in one place; flags on the command line override them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWDECK_", extra="ignore")

    database_url: str = "sqlite:///flowdeck.db"
    # when set, every request but /health needs "Authorization: Bearer <token>"
    auth_token: str | None = None
    # Host names (besides loopback and the address served on) that /mcp answers, e.g. behind a proxy
    allowed_hosts: list[str] = Field(default_factory=list)
    execution_timeout_s: float = Field(default=300.0, gt=0)
    # the most one node output, or one set of parameters, stores; larger values are cut and marked
    max_value_bytes: int = Field(default=1024 * 1024, ge=1024)
    # the largest request body accepted (a tool call's arguments, a flow definition); larger: 413
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # how often a process says it is alive, and looks for dead ones
    heartbeat_s: float = Field(default=5.0, gt=0)
    # a runner whose heartbeat is older than this is dead: its pending executions become interrupted
    # (within stale_after_s + heartbeat_s of its last heartbeat)
    stale_after_s: float = Field(default=30.0, gt=0)
    # the MCP servers that mcp nodes call, in the mcpServers format of desktop clients
    mcp_servers: Path | None = None
    # a link from an execution to its trace in the tracing backend: {trace_id} is replaced
    # (e.g. http://localhost:6006/trace/{trace_id}); traces are sent when OTEL_EXPORTER_OTLP_* is set
    trace_url: str | None = None
