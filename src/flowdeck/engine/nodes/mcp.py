"""``mcp``: calls a tool of another MCP server, one named in the servers file.

Its output is the tool's ``structuredContent`` when it returns one; otherwise its text content
(items joined by newlines, parsed as JSON when the whole is JSON); other content kinds as the list
of content items. A result with ``isError`` fails the node with the tool's text.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowdeck.engine.nodes import NodeContext, NodeError, NodeType
from flowdeck.engine.ports import ToolReply

# what a remote flowdeck says of the execution it recorded for the call
REMOTE_EXECUTION_META = "flowdeck/execution_id"


class McpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server: str = Field(min_length=1)
    tool: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


def _text(reply: ToolReply) -> str | None:
    """The reply's text, when all of its content is text."""
    if not all(item.get("type") == "text" for item in reply.content):
        return None
    return "\n".join(str(item.get("text", "")) for item in reply.content)


def output_of(reply: ToolReply) -> Any:
    if reply.structured is not None:
        return reply.structured
    text = _text(reply)
    if text is None:
        return reply.content
    try:
        return json.loads(text)
    except ValueError:
        return text


class Mcp(NodeType):
    name = "mcp"
    Config = McpConfig

    async def run(self, config: McpConfig, context: NodeContext) -> Any:
        tools = context.services.tools
        if tools is None or not tools.knows(config.server):
            raise NodeError(f"no MCP server named {config.server!r} in the servers file")

        def on_progress(progress: float, total: float | None, message: str | None) -> None:
            of = f"/{total:g}" if total else ""
            context.progress(f"{context.node_id} [{progress:g}{of}]")

        context.note_remote(config.server, config.tool)
        reply = await tools.call(config.server, config.tool, config.arguments, on_progress=on_progress)
        context.note_reply(reply)
        remote_id = reply.meta.get(REMOTE_EXECUTION_META)
        if isinstance(remote_id, str):
            context.note_remote(config.server, config.tool, remote_id)
        if reply.is_error:
            text = _text(reply) or json.dumps(reply.content)
            raise NodeError(f"{config.server}/{config.tool}: {text}")
        return output_of(reply)


node = Mcp()
