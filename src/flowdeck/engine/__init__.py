"""The engine: runs a flow node by node and reports to an observer. Of flowdeck it imports only the
bottom layer (states, records, times, errors); nothing of storage, tracking, MCP or HTTP serving
(checked by import-linter in the tests)."""

from flowdeck.engine.definition import (
    NAME_PATTERN,
    TOOL_NAME_PATTERN,
    ExposedFlowDefinition,
    FlowDefinition,
    NodeSpec,
)
from flowdeck.engine.execute import (
    Attempt,
    ItemRun,
    NullObserver,
    Observer,
    Observers,
    Run,
    StepRun,
    run_flow,
)
from flowdeck.engine.nodes import NodeContext, NodeError, NodeType, node_types
from flowdeck.engine.ports import MAX_FLOW_DEPTH, ChildFlows, Parent, Services, ToolReply, Tools
from flowdeck.engine.prepare import FlowNotRunnable, PreparedFlow

__all__ = [
    "MAX_FLOW_DEPTH",
    "NAME_PATTERN",
    "TOOL_NAME_PATTERN",
    "Attempt",
    "ChildFlows",
    "ExposedFlowDefinition",
    "FlowDefinition",
    "FlowNotRunnable",
    "ItemRun",
    "NodeContext",
    "NodeError",
    "NodeSpec",
    "NodeType",
    "NullObserver",
    "Observer",
    "Observers",
    "Parent",
    "PreparedFlow",
    "Run",
    "Services",
    "StepRun",
    "ToolReply",
    "Tools",
    "node_types",
    "run_flow",
]
