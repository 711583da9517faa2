"""The migrations, on SQLite and PostgreSQL: they build the schema the code declares, and a database
made by an older flowdeck keeps its history searchable after it is migrated (and back)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from flowdeck.store import database
from flowdeck.store.reads import Filter, list_executions
from flowdeck.store.tables import metadata
from tests.conftest import KINDS

_names = itertools.count()


@pytest.fixture(params=KINDS)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database no flowdeck has touched yet."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database(f"empty_{next(_names)}")
    db = database.open_database(url)
    yield db
    db.dispose()


def test_the_migrations_build_the_schema_the_code_declares(db: Engine) -> None:
    with db.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def _migrate(db: Engine, revision: str, *, down: bool = False) -> None:
    (command.downgrade if down else command.upgrade)(database.alembic_config(db), revision)


def test_arguments_recorded_before_the_index_are_searchable_after_it(empty: Engine) -> None:
    _migrate(empty, "0004")  # before the argument index
    with empty.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO flows (id, name, definition, created_at, updated_at)"
                " VALUES ('f1', 'orders', '{\"name\": \"orders\", \"nodes\": []}', 1, 1)"
            )
        )
        for n, arguments in enumerate(
            [{"order_id": "ord-1", "qty": 3}, {"order_id": "ord-2"}, "not an object"]
        ):
            connection.execute(
                text(
                    "INSERT INTO executions (id, flow_id, flow_name, flow_revision, status, started_at,"
                    " params_preview, initial_params, steps_total, transport, runner_id)"
                    " VALUES (:id, 'f1', 'orders', 1, 'fulfilled', :at, '', :params, 0, 'http', 'r')"
                ),
                {
                    "id": f"0000000{n}-0000-7000-8000-000000000000",
                    "at": n + 1,
                    "params": json.dumps(arguments),
                },
            )
    database.upgrade(empty)

    def found(**arguments: str) -> list[str]:
        where = Filter(flow_id="f1", params=tuple(arguments.items()))
        return [item.id for item in list_executions(empty, where).items]

    assert found(order_id="ord-2") == ["00000001-0000-7000-8000-000000000000"]
    assert found(qty="3") == ["00000000-0000-7000-8000-000000000000"]
    assert found(qty="3", order_id="ord-1") == ["00000000-0000-7000-8000-000000000000"]
    assert list_executions(empty, Filter(params=(("order_id", "ord-1"),))).total == 1  # across flows

    _migrate(empty, "0005", down=True)  # and back, and forward again
    database.upgrade(empty)
    assert found(order_id="ord-1") == ["00000000-0000-7000-8000-000000000000"]
