"""Fixtures: a database of each kind (SQLite in a temporary folder, a real throwaway PostgreSQL),
migrated, and helpers to load flows into it.

One PostgreSQL cluster serves the whole session (``pg_cluster``): each test gets a database of its
own, copied from a migrated template. Tests that stop the server stop this one and start it again;
tests that need PostgreSQL are marked ``postgres`` (``pytest -m "not postgres"`` skips them)."""

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


TEMPLATE = "flowdeck_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    try:
        template = cluster.create_database(TEMPLATE)
        db = database.open_database(template)
        database.upgrade(db)
        db.dispose()
        yield cluster
    finally:
        cluster.remove()


def new_pg_database(cluster: Cluster, **options: str) -> str:
    """A fresh, migrated PostgreSQL database of the session's cluster: its URL."""
    return cluster.create_database(f"t{os.getpid()}_{next(_numbers)}", template=TEMPLATE, **options)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    return new_pg_database(pg_cluster)


# each kind of database, for the fixtures that give one
KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def new_database(kind: str, folder: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database of a kind (``sqlite``, ``postgres``): its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'flowdeck.db'}"
        db = database.open_database(url)
        database.upgrade(db)
        db.dispose()
        return url
    return new_pg_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture(params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind, for each test. A module whose tests share one server makes it
    ``module_database_url`` (its tests must then not count on the database being empty)."""
    return new_database(request.param, tmp_path, request)


@pytest.fixture(scope="module", params=KINDS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of each kind, for the tests of one module."""
    return new_database(request.param, tmp_path_factory.mktemp("shared"), request)


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
