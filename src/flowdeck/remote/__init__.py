"""The MCP servers flowdeck calls: the servers file that names them, and the sessions its ``mcp``
nodes call their tools through (one per server per process, kept open). Serving MCP is
:mod:`flowdeck.mcp`; this room is a client, owned by the runtime."""

from flowdeck.remote.pool import RemoteTools
from flowdeck.remote.servers import HttpServer, ServerSpec, StdioServer, exposed_prefixes, load_servers

__all__ = ["HttpServer", "RemoteTools", "ServerSpec", "StdioServer", "exposed_prefixes", "load_servers"]
