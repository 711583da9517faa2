"""The engine: runs a flow node by node and reports to an observer. It imports nothing of storage,
tracking, MCP or HTTP serving (checked by import-linter in the tests)."""

from flowdeck.engine.definition import NAME_PATTERN, FlowDefinition, NodeSpec
from flowdeck.engine.nodes import NodeContext, NodeError, NodeType, node_types
from flowdeck.engine.runner import (
    ERROR,
    FULFILLED,
    PENDING,
    SKIPPED,
    ExecutionError,
    FlowNotRunnable,
    NullObserver,
    Observer,
    Observers,
    PreparedFlow,
    Run,
    Step,
    run_flow,
)

__all__ = [
    "ERROR",
    "FULFILLED",
    "NAME_PATTERN",
    "PENDING",
    "SKIPPED",
    "ExecutionError",
    "FlowDefinition",
    "FlowNotRunnable",
    "NodeContext",
    "NodeError",
    "NodeSpec",
    "NodeType",
    "NullObserver",
    "Observer",
    "Observers",
    "PreparedFlow",
    "Run",
    "Step",
    "node_types",
    "run_flow",
]
