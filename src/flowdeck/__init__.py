"""flowdeck: user-defined flows served as MCP tools, every call recorded as an execution."""

__version__ = "0.1.0"
