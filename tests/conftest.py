"""Fixtures: a database of each kind (SQLite in a temporary folder, a real throwaway PostgreSQL),
migrated, and helpers to load flows into it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from flowdeck.engine import NodeContext, NodeType, node_types
from flowdeck.flowfiles import load_flow_text
from flowdeck.settings import Settings
from flowdeck.store import database
from flowdeck.store.flows import FlowRecord, import_flow
from tests.support.postgres import Cluster

_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    try:
        template = cluster.create_database("flowdeck_template")
        db = database.open_database(template)
        database.upgrade(db)
        db.dispose()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'flowdeck.db'}"
        db = database.open_database(url)
        database.upgrade(db)
        db.dispose()
        return url
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{os.getpid()}_{next(_numbers)}", template="flowdeck_template")


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    db = database.open_database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def add_flow(db: Engine):  # type: ignore[no-untyped-def]
    """Store a flow written as YAML text; returns its record."""

    def add(text: str) -> FlowRecord:
        definition = load_flow_text(text)
        record, _ = import_flow(db, definition.model_dump(mode="json", exclude_none=True))
        return record

    return add


class Probe(NodeType):
    """A node that notes each time it runs: proves whether any node ran."""

    name = "probe"
    Config = node_types()["transform"].Config

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run(self, config: Any, context: NodeContext) -> Any:
        self.calls.append(context.execution_id)
        return config.value


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    """A ``probe`` node type, registered for one test."""
    node = Probe()
    monkeypatch.setitem(node_types(), "probe", node)
    return node
