"""Flow rows: create, update (the revision grows), soft delete, and look-ups.

A deleted flow keeps its row (``deleted_at`` set): its executions still name it, and its name is free
for a new live flow.

A flow made by flowdeck to serve a remote server's tool (``exposed``) is written only by
:func:`sync_exposed`: the other writers refuse to change it or to take its name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from flowdeck.errors import FlowNotFound, NameTaken, ReadOnlyFlow
from flowdeck.ids import new_id
from flowdeck.store.tables import executions, flow_revisions, flows
from flowdeck.times import now_us


@dataclass(frozen=True, slots=True)
class FlowRecord:
    id: str
    name: str
    title: str | None
    description: str
    definition: dict[str, Any]
    revision: int
    created_at: int
    updated_at: int
    deleted_at: int | None
    exposed: dict[str, Any] | None = None  # {"server", "tool": the remote tool as listed}

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def exposed_server(self) -> str | None:
        return None if self.exposed is None else self.exposed["server"]

    def taken_by(self) -> str:
        """Who holds this flow's name, for a message refusing it to another."""
        if self.exposed is None:
            return f"the flow {self.name!r}"
        return f"the tool {self.exposed['tool']['name']!r} of the MCP server {self.exposed['server']!r}"


def _record(row: Any) -> FlowRecord:
    return FlowRecord(
        id=row.id,
        name=row.name,
        title=row.title,
        description=row.description,
        definition=json.loads(row.definition),
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
        exposed=None if row.exposed is None else json.loads(row.exposed),
    )


def _dump(definition: dict[str, Any]) -> str:
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def create_flow(db: Engine, definition: dict[str, Any]) -> FlowRecord:
    """Insert a live flow from a validated definition (as a dict); a name taken is said with who
    holds it."""
    try:
        return _insert(db, definition, None)
    except NameTaken:
        raise _name_taken(db, definition["name"]) from None


def _insert(db: Engine, definition: dict[str, Any], exposed: dict[str, Any] | None) -> FlowRecord:
    now = now_us()
    values = {
        "exposed": None if exposed is None else _dump(exposed),
        "id": new_id(),
        "name": definition["name"],
        "title": definition.get("title"),
        "description": definition.get("description") or "",
        "definition": _dump(definition),
        "revision": 1,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with db.begin() as connection:
            connection.execute(insert(flows).values(**values))
            _keep_revision(connection, values["id"])
    except IntegrityError:
        raise NameTaken(f"a flow named {definition['name']!r} already exists") from None
    return get_flow(db, values["id"])


def _name_taken(db: Engine, name: str) -> NameTaken:
    holder = find_live_flow(db, name)
    if holder is None or holder.exposed is None:
        return NameTaken(f"a flow named {name!r} already exists")
    return NameTaken(f"the name {name!r} is taken by {holder.taken_by()}, which flowdeck serves under it")


def update_flow(db: Engine, flow_id: str, definition: dict[str, Any]) -> FlowRecord:
    """Replace a live flow's definition; the revision grows by one. Renaming is allowed; a flow
    made to serve a remote tool is refused (:class:`~flowdeck.errors.ReadOnlyFlow`)."""
    current = get_flow(db, flow_id)
    if current.exposed is not None and not current.deleted:
        raise ReadOnlyFlow(
            f"{current.name!r} is made by flowdeck from {current.taken_by()} and follows it: it can't be"
            " edited (change the remote tool, or its entry in the servers file)"
        )
    return _update(db, flow_id, definition, None)


def _update(
    db: Engine, flow_id: str, definition: dict[str, Any], exposed: dict[str, Any] | None
) -> FlowRecord:
    try:
        with db.begin() as connection:
            result = connection.execute(
                update(flows)
                .where(flows.c.id == flow_id, flows.c.deleted_at.is_(None))
                .values(
                    exposed=None if exposed is None else _dump(exposed),
                    name=definition["name"],
                    title=definition.get("title"),
                    description=definition.get("description") or "",
                    definition=_dump(definition),
                    revision=flows.c.revision + 1,
                    updated_at=now_us(),
                )
            )
            if result.rowcount == 0:
                raise FlowNotFound(f"no live flow with id {flow_id!r}")
            _keep_revision(connection, flow_id)
    except IntegrityError:
        raise _name_taken(db, definition["name"]) from None
    return get_flow(db, flow_id)


def _keep_revision(connection: Connection, flow_id: str) -> None:
    """Keep the flow's new revision, so that its executions' nodes are known whatever comes next."""
    connection.execute(
        insert(flow_revisions).from_select(
            ["flow_id", "revision", "definition", "created_at"],
            select(flows.c.id, flows.c.revision, flows.c.definition, flows.c.updated_at).where(
                flows.c.id == flow_id
            ),
        )
    )


def definition_at(db: Engine, flow_id: str, revision: int) -> dict[str, Any] | None:
    """A flow's definition as it was at ``revision``."""
    with db.connect() as connection:
        text = connection.execute(
            select(flow_revisions.c.definition).where(
                flow_revisions.c.flow_id == flow_id, flow_revisions.c.revision == revision
            )
        ).scalar()
    return None if text is None else json.loads(text)


def import_flow(
    db: Engine, definition: dict[str, Any]
) -> tuple[FlowRecord, Literal["created", "updated", "unchanged"]]:
    """Create the flow, or update the live flow of that name when its definition changed. Servers
    started together on one database import the same files at once: the one that loses the race
    to create a flow finds it made by the other."""
    existing = find_live_flow(db, definition["name"])
    if existing is None:
        try:
            return _insert(db, definition, None), "created"
        except NameTaken:
            existing = find_live_flow(db, definition["name"])
            if existing is None:  # made and deleted meanwhile: the name is free again
                raise
    if existing.exposed is not None:
        raise _name_taken(db, existing.name)
    if _dump(existing.definition) == _dump(definition):
        return existing, "unchanged"
    return update_flow(db, existing.id, definition), "updated"


def sync_exposed(
    db: Engine, server: str, prefix: str, made: dict[str, tuple[dict[str, Any], dict[str, Any]]]
) -> tuple[bool, list[str]]:
    """Make the live flows exposing ``server``'s tools under ``prefix`` be ``made`` (definition and
    ``exposed`` by name): create, update, and delete those its tools no longer name. A name held by
    a flow someone wrote, or by another server's tool, stays theirs. Whether anything changed, and
    a message for each name refused."""
    changed = False
    refused: list[str] = []
    for name, (definition, exposed) in made.items():
        existing = find_live_flow(db, name)
        if existing is None:
            try:
                _insert(db, definition, exposed)
                changed = True
                continue
            except NameTaken:  # another server process made it meanwhile
                existing = find_live_flow(db, name)
                if existing is None:
                    raise
        if existing.exposed_server != server:
            refused.append(
                f"the tool {exposed['tool']['name']!r} of the MCP server {server!r} is not served as"
                f" {name!r}: {existing.taken_by()} has that name"
                " (rename one, or give the server another prefix)"
            )
        elif _dump(existing.definition) != _dump(definition) or existing.exposed != exposed:
            _update(db, existing.id, definition, exposed)
            changed = True
    for record in list_flows(db):
        if record.exposed_server == server and record.name.startswith(prefix) and record.name not in made:
            delete_flow(db, record.id)
            changed = True
    return changed, refused


def delete_flow(db: Engine, flow_id: str) -> FlowRecord:
    """Mark a live flow deleted; its row and its executions stay."""
    with db.begin() as connection:
        result = connection.execute(
            update(flows)
            .where(flows.c.id == flow_id, flows.c.deleted_at.is_(None))
            .values(deleted_at=now_us(), updated_at=now_us())
        )
    if result.rowcount == 0:
        raise FlowNotFound(f"no live flow with id {flow_id!r}")
    return get_flow(db, flow_id)


def get_flow(db: Engine, flow_id: str) -> FlowRecord:
    """A flow by id, deleted or not."""
    with db.connect() as connection:
        row = connection.execute(select(flows).where(flows.c.id == flow_id)).first()
    if row is None:
        raise FlowNotFound(f"no flow with id {flow_id!r}")
    return _record(row)


def find_live_flow(db: Engine, name: str) -> FlowRecord | None:
    with db.connect() as connection:
        row = connection.execute(
            select(flows).where(flows.c.name == name, flows.c.deleted_at.is_(None))
        ).first()
    return _record(row) if row is not None else None


def resolve_flow(db: Engine, name_or_id: str) -> FlowRecord:
    """The live flow of that name, else the flow (even deleted) of that id: what CLI users type."""
    found = find_live_flow(db, name_or_id)
    if found is not None:
        return found
    try:
        return get_flow(db, name_or_id)
    except FlowNotFound:
        pass
    with db.connect() as connection:
        row = connection.execute(
            select(flows).where(flows.c.name == name_or_id).order_by(flows.c.deleted_at.desc()).limit(1)
        ).first()
    if row is None:
        raise FlowNotFound(f"no flow named {name_or_id!r}")
    return _record(row)


def list_flows(db: Engine, *, include_deleted: bool = False) -> list[FlowRecord]:
    """Live flows by name; with ``include_deleted``, deleted flows that still have executions follow."""
    query = select(flows).order_by(flows.c.deleted_at.is_not(None), flows.c.name, flows.c.deleted_at)
    if include_deleted:
        has_executions = select(executions.c.id).where(executions.c.flow_id == flows.c.id).exists()
        query = query.where(flows.c.deleted_at.is_(None) | has_executions)
    else:
        query = query.where(flows.c.deleted_at.is_(None))
    with db.connect() as connection:
        return [_record(row) for row in connection.execute(query)]


def flows_version(db: Engine) -> tuple[int, int]:
    """A stamp that changes whenever a flow is created, changed or deleted (by any process)."""
    with db.connect() as connection:
        count, latest = connection.execute(select(func.count(), func.max(flows.c.updated_at))).one()
    return count, latest or 0
