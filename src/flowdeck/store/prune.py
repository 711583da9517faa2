"""Deleting old executions, only when an operator asks (nothing is ever deleted on its own).

Ended executions started before a time, in batches of ``BATCH``, each its own short transaction, so
that the calls running meanwhile wait at most one batch for the database. A pending execution is
never touched. The triggers on ``executions`` keep the counters (totals, the daily chart) exact as
rows go. An execution's steps go by their key; its argument-index rows by theirs, rebuilt from its
stored arguments (the index has no other way in by execution); only the rare execution whose
arguments were cut when stored is looked for by id alone.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine, delete, func, select, tuple_

from flowdeck.states import Status
from flowdeck.store.reads import Filter, matching
from flowdeck.store.tables import execution_params, executions, steps
from flowdeck.store.values import decode_value, param_pairs

BATCH = 500


def _conditions(where: Filter, before_us: int) -> list[object]:
    """Ended executions that ``where`` matches, started before ``before_us``."""
    _, _, conditions = matching(replace(where, until=before_us - 1, params=()))
    return [*conditions, executions.c.status != Status.PENDING]


def count_prunable(db: Engine, where: Filter, before_us: int) -> int:
    """How many :func:`prune_executions` would delete now."""
    query = select(func.count()).select_from(executions).where(*_conditions(where, before_us))
    with db.connect() as connection:
        return int(connection.execute(query).scalar_one())


def prune_executions(db: Engine, where: Filter, before_us: int) -> int:
    """Delete the ended executions ``where`` matches (its flow and status) started before
    ``before_us``, with their steps and argument-index rows; returns how many."""
    conditions = _conditions(where, before_us)
    deleted = 0
    while True:
        with db.begin() as connection:
            rows = connection.execute(
                select(
                    executions.c.id,
                    executions.c.flow_id,
                    executions.c.initial_params,
                    executions.c.params_truncated,
                )
                .where(*conditions)
                .order_by(executions.c.id)
                .limit(BATCH)
            ).all()
            if not rows:
                return deleted
            ids = [row.id for row in rows]
            keys = [
                (key, value, row.flow_id, row.id)
                for row in rows
                if not row.params_truncated
                for key, value in param_pairs(decode_value(row.initial_params))
            ]
            if keys:
                index = (execution_params.c.key, execution_params.c.value, execution_params.c.flow_id)
                connection.execute(
                    delete(execution_params).where(tuple_(*index, execution_params.c.execution_id).in_(keys))
                )
            cut = [row.id for row in rows if row.params_truncated]
            if cut:
                connection.execute(delete(execution_params).where(execution_params.c.execution_id.in_(cut)))
            connection.execute(delete(steps).where(steps.c.execution_id.in_(ids)))
            connection.execute(delete(executions).where(executions.c.id.in_(ids)))
        deleted += len(ids)
