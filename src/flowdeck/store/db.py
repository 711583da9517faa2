"""Opening a database: URL handling, SQLite settings, and migrations to the current schema."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


class DatabaseError(Exception):
    """The database can't be opened, migrated or written; the message says what to do."""


def now_us() -> int:
    """Now, as stored: microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` (and ``postgres://``) as users write them; use the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"not a database URL: {url!r}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("sqlite", "postgresql+psycopg"):
        raise DatabaseError(f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def open_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives the
    process being killed (it is in the WAL file), which is what the execution guarantees rely on."""
    engine = create_engine(normalize_url(url), pool_pre_ping=True)
    if is_sqlite(engine):
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine, "connect")
        def _sqlite_settings(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

    return engine


def alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(engine: Engine) -> None:
    """Migrate to the newest schema; a no-op when the database is current."""
    from alembic import command

    try:
        if current_revision(engine) == head_revision():
            return
        command.upgrade(alembic_config(engine), "head")
    except DatabaseError:
        raise
    except Exception as exc:
        raise DatabaseError(f"cannot migrate the database at {engine.url!r}: {exc}") from exc
