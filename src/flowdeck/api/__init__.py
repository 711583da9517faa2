"""The HTTP API: flows, executions and their live events, as JSON."""
