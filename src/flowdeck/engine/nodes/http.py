"""``http``: one HTTP request with httpx; output ``{"status", "headers", "body"}``.

The body is parsed as JSON when the response says it is JSON, else kept as text. A response larger
than ``max_body_bytes`` fails the node instead of filling memory.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
from opentelemetry.propagate import inject
from pydantic import BaseModel, ConfigDict, Field

from flowdeck.engine.nodes import NodeContext, NodeError, NodeType

# Built once: creating a TLS context per request costs milliseconds.
_TLS = httpx.create_ssl_context()


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Any] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    timeout_s: float = Field(default=30.0, gt=0)
    raise_for_status: bool = True
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0)


def _parse_body(response: httpx.Response, raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode(response.encoding or "utf-8", errors="replace")
    if "json" in response.headers.get("content-type", ""):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class Http(NodeType):
    name = "http"
    Config = HttpConfig

    async def run(self, config: HttpConfig, context: NodeContext) -> dict[str, Any]:
        target = f"{config.method} {config.url}"
        headers = dict(config.headers)
        inject(headers)  # the trace's traceparent, when the call is traced (else nothing)
        try:
            async with (
                httpx.AsyncClient(verify=_TLS, timeout=config.timeout_s) as client,
                client.stream(
                    config.method,
                    config.url,
                    headers=headers,
                    params=config.query,
                    json=config.json_body,
                ) as response,
            ):
                raw = bytearray()
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) > config.max_body_bytes:
                        raise NodeError(f"{target}: response body larger than {config.max_body_bytes} bytes")
        except httpx.TimeoutException:
            raise NodeError(f"{target}: timed out after {config.timeout_s:g} s") from None
        except httpx.InvalidURL as exc:
            raise NodeError(f"invalid url {config.url!r}: {exc}") from None
        except httpx.HTTPError as exc:
            raise NodeError(f"{target}: {type(exc).__name__}: {exc}") from None
        if config.raise_for_status and response.status_code >= 400:
            raise NodeError(f"{target}: HTTP {response.status_code} {response.reason_phrase}")
        return {
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": _parse_body(response, bytes(raw)),
        }


node = Http()
