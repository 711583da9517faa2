"""Executions written straight into the database with chosen times, arguments and outcomes: for the
tests whose expected figures must be known exactly (a 662 µs step, a time window, a grouped error)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert

from flowdeck.states import ErrorType, Status, StepStatus, Transport
from flowdeck.store.flows import FlowRecord
from flowdeck.store.seed import SEED_RUNNER, uuid7_at
from flowdeck.store.tables import execution_params, executions, steps
from flowdeck.store.values import param_pairs, params_preview
from flowdeck.times import SECOND_US

CHECKOUT = """
name: checkout
input_schema:
  type: object
  properties: {order_id: {type: string}, qty: {type: integer}}
nodes:
  - {id: price, type: transform, config: {value: 1}}
  - {id: charge, type: transform, config: {value: 2}}
  - {id: ship, type: transform, config: {value: 3}}
"""
HOUR_US = 3600 * SECOND_US


@dataclass(frozen=True)
class Ran:
    """One node's run: how long it took, and its error if it failed."""

    node_id: str
    took_us: int
    error: str | None = None


def record_execution(
    db: Engine, flow: FlowRecord, *, started_at: int, params: dict[str, Any], ran: list[Ran]
) -> str:
    """Write a finished execution whose nodes ran as ``ran`` says (it fails at the first error)."""
    execution_id = uuid7_at(started_at // 1000, 0)
    at = started_at
    step_rows = []
    for index, node in enumerate(ran):
        step_rows.append(
            {
                "execution_id": execution_id,
                "idx": index,
                "node_id": node.node_id,
                "node_type": "transform",
                "status": StepStatus.ERROR if node.error else StepStatus.FULFILLED,
                "started_at": at,
                "ended_at": at + node.took_us,
                "output": None if node.error else "{}",
                "error": node.error,
            }
        )
        at += node.took_us
    failed = next((node for node in ran if node.error), None)
    with db.begin() as connection:
        connection.execute(
            insert(executions).values(
                id=execution_id,
                flow_id=flow.id,
                flow_name=flow.name,
                flow_revision=flow.revision,
                status=Status.ERROR if failed else Status.FULFILLED,
                started_at=started_at,
                ended_at=at,
                params_preview=params_preview(params),
                initial_params=json.dumps(params),
                steps_total=len(ran),
                transport=Transport.HTTP,
                runner_id=SEED_RUNNER,
                error_type=ErrorType.NODE_ERROR if failed else None,
                error_message=failed.error if failed else None,
                error_node_id=failed.node_id if failed else None,
            )
        )
        if step_rows:
            connection.execute(insert(steps), step_rows)
        pairs = param_pairs(params)
        if pairs:
            connection.execute(
                insert(execution_params),
                [
                    {"execution_id": execution_id, "flow_id": flow.id, "key": key, "value": value}
                    for key, value in pairs
                ],
            )
    return execution_id


def checkout_history(db: Engine, flow: FlowRecord, start: int) -> dict[str, list[str]]:
    """Twenty executions a second apart: ``price`` took 1..20 ms; ``charge`` failed in five of them
    (one shape, different numbers and quoted values) and in one more with another message."""
    made: dict[str, list[str]] = {"all": [], "declined": [], "timeout": [], "qty3": []}
    for k in range(1, 21):
        ran = [Ran("price", k * 1000)]
        if k in (3, 6, 9, 12, 15):
            ran.append(Ran("charge", 500, f'card 42{k} declined for "user{k}@example.com"'))
        elif k == 18:
            ran.append(Ran("charge", 700, "gateway timed out"))
        else:
            ran += [Ran("charge", 2000), Ran("ship", 100)]
        qty = k % 4
        execution_id = record_execution(
            db, flow, started_at=start + k * SECOND_US, params={"order_id": f"ord-{k}", "qty": qty}, ran=ran
        )
        made["all"].append(execution_id)
        if k in (3, 6, 9, 12, 15):
            made["declined"].append(execution_id)
        if k == 18:
            made["timeout"].append(execution_id)
        if qty == 3:
            made["qty3"].append(execution_id)
    return made
