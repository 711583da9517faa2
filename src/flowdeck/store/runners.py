"""Runner rows: a runner is a process that runs flows (``serve``, ``mcp``, a ``flows run``). Every one
registers, heartbeats, and is recovered when it dies.

A runner is dead when it stopped without finishing its executions, when its heartbeat is older than
the stale limit, or, on the same host, when its process no longer exists. Its pending executions then
become ``error`` / ``interrupted``, exactly once even when several live runners race to mark them.
"""

from __future__ import annotations

import os
import socket
from functools import cache

from sqlalchemy import Engine, and_, bindparam, delete, func, insert, select, update

from flowdeck.ids import new_id
from flowdeck.states import ErrorType, Status, StepStatus
from flowdeck.store.tables import executions, runners, steps
from flowdeck.store.writes import EVENTS_CHANNEL
from flowdeck.times import SECOND_US, now_us

INTERRUPTED_MESSAGE = (
    "the process running this execution stopped before it ended; its end is the last moment the process"
    " was known to be alive"
)


@cache
def host_identity() -> str:
    """This host's name and boot, so that a process id is only ever compared on the machine it names."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip()
    except OSError:
        boot = "unknown-boot"
    return f"{socket.gethostname()}/{boot}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register_runner(db: Engine, kind: str) -> str:
    now = now_us()
    runner_id = new_id()
    with db.begin() as connection:
        connection.execute(
            insert(runners).values(
                id=runner_id,
                kind=kind,
                hostname=host_identity(),
                pid=os.getpid(),
                started_at=now,
                heartbeat_at=now,
            )
        )
    return runner_id


def heartbeat(db: Engine, runner_id: str) -> None:
    with db.begin() as connection:
        connection.execute(update(runners).where(runners.c.id == runner_id).values(heartbeat_at=now_us()))


# PostgreSQL: servers whose watchers want every server's events say so on this channel, with the
# moment (µs) until which they do; a process that starts later reads it from the runners
WATCHING_CHANNEL = "flowdeck_watching"
WATCHED_UNTIL_SQL = "SELECT coalesce(max(watched_until), 0) FROM runners"
RESYNC = "resync"  # on the events channel, instead of events: watchers reload


def announce_watched(db: Engine, runner_id: str | None, until_us: int) -> None:
    """Tell every process (now, and those that start before ``until_us``) that this one's watchers
    want their events until then."""
    with db.begin() as connection:
        if runner_id is not None:
            mine = runners.c.id == runner_id
            connection.execute(update(runners).where(mine).values(watched_until=until_us))
        connection.execute(select(func.pg_notify(WATCHING_CHANNEL, str(until_us))))


def watched_until(payload: str) -> int:
    """The moment a notice on ``WATCHING_CHANNEL`` names; 0 (long past) for one that names none."""
    return int(payload) if payload.isdigit() else 0


def send_resync(db: Engine) -> None:
    """Tell every server's watchers to reload: this process recorded executions without sending
    their events (nobody watched, as far as it knew)."""
    with db.begin() as connection:
        connection.execute(select(func.pg_notify(EVENTS_CHANNEL, RESYNC)))


def unregister_runner(db: Engine, runner_id: str) -> None:
    """A clean stop: the runner's row goes; recovery then treats what it left pending as interrupted."""
    with db.begin() as connection:
        connection.execute(delete(runners).where(runners.c.id == runner_id))


def dead_runners(db: Engine, *, stale_after_s: float, exclude: str | None = None) -> list[str]:
    """Ids of runners that are gone, and of runners named by pending executions but not registered."""
    limit = now_us() - int(stale_after_s * SECOND_US)
    with db.connect() as connection:
        rows = connection.execute(
            select(runners.c.id, runners.c.hostname, runners.c.pid, runners.c.heartbeat_at)
        ).all()
        orphaned = (
            connection.execute(
                select(executions.c.runner_id)
                .where(
                    executions.c.status == Status.PENDING, executions.c.runner_id.not_in(select(runners.c.id))
                )
                .distinct()
            )
            .scalars()
            .all()
        )
    here = host_identity()
    dead = [
        row.id
        for row in rows
        if row.id != exclude
        and (row.heartbeat_at < limit or (row.hostname == here and not _process_alive(row.pid)))
    ]
    return dead + [runner for runner in orphaned if runner != exclude]


def recover(db: Engine, *, stale_after_s: float = 60.0, exclude: str | None = None) -> int:
    """Mark the pending executions of dead runners ``error`` / ``interrupted``; return how many."""
    dead = dead_runners(db, stale_after_s=stale_after_s, exclude=exclude)
    if not dead:
        return 0
    now = now_us()
    running_node = (
        select(steps.c.node_id)
        .where(steps.c.execution_id == executions.c.id, steps.c.status == StepStatus.PENDING)
        .order_by(steps.c.idx.desc())
        .limit(1)
        .scalar_subquery()
    )
    # guarded by PENDING, as the writer's final update is: an execution ends once, whoever is first
    pending_of_dead = and_(
        executions.c.status == Status.PENDING, executions.c.runner_id.in_(bindparam("dead", expanding=True))
    )
    # its end is the last moment its process is known to have been alive: its last heartbeat, or its
    # last recorded step, whichever is later (not the moment it was found dead)
    last_step = (
        select(func.max(func.coalesce(steps.c.ended_at, steps.c.started_at)))
        .where(steps.c.execution_id == executions.c.id)
        .scalar_subquery()
    )
    last_beat = select(runners.c.heartbeat_at).where(runners.c.id == executions.c.runner_id).scalar_subquery()
    with db.begin() as connection:
        found = connection.execute(
            select(
                executions.c.id, executions.c.started_at, last_step.label("step"), last_beat.label("beat")
            ).where(pending_of_dead),
            {"dead": dead},
        ).all()
        marked = 0
        for row in found:
            ended = min(now, max(row.started_at, row.step or 0, row.beat or 0))
            marked += connection.execute(
                update(executions)
                .where(executions.c.id == row.id, executions.c.status == Status.PENDING)
                .values(
                    status=Status.ERROR,
                    ended_at=ended,
                    error_type=ErrorType.INTERRUPTED,
                    error_message=INTERRUPTED_MESSAGE,
                    error_node_id=running_node,
                )
            ).rowcount
            connection.execute(
                update(steps)
                .where(steps.c.execution_id == row.id, steps.c.status == StepStatus.PENDING)
                .values(
                    status=StepStatus.ERROR,
                    ended_at=ended,
                    error=f"{ErrorType.INTERRUPTED}: {INTERRUPTED_MESSAGE}",
                )
            )
        connection.execute(delete(runners).where(runners.c.id.in_(dead)))
    return marked
