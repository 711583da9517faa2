"""MCP: every live flow served as a tool. The only package that speaks MCP."""

from flowdeck.mcp.server import EXECUTION_ID_META, build_server

__all__ = ["EXECUTION_ID_META", "build_server"]
