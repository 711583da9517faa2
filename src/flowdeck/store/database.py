"""Opening a database: URL handling, SQLite settings, and migrations to the current schema."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from flowdeck.errors import DatabaseUnavailable
from flowdeck.store.sqlite_library import threads_read_side_by_side

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` (and ``postgres://``) as users write them; use the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(f"not a database URL: {url!r}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("sqlite", "postgresql+psycopg"):
        raise DatabaseUnavailable(
            f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://"
        )
    return parsed.render_as_string(hide_password=False)


def is_sqlite(db: Engine) -> bool:
    return db.dialect.name == "sqlite"


def open_database(url: str) -> Engine:
    """A handle on the database at ``url`` (a SQLAlchemy engine and its pool, called ``db`` everywhere,
    since "engine" is the flow engine here). SQLite runs in WAL mode with ``synchronous=NORMAL``: a
    commit survives the process being killed (it is in the WAL file), which is what the execution
    guarantees rely on. The first SQLite database a process opens sets the library up for threads
    (:mod:`.sqlite_library`)."""
    db = create_engine(normalize_url(url), pool_pre_ping=True)
    if is_sqlite(db):
        threads_read_side_by_side()
        path = db.url.database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(db, "connect")
        def _sqlite_settings(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

    return db


def alembic_config(db: Engine | None):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database"] = db
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = alembic_config(None)
    return ScriptDirectory.from_config(config).get_current_head() or ""


def current_revision(db: Engine) -> str | None:
    with db.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def upgrade(db: Engine) -> None:
    """Migrate to the newest schema; a no-op when the database is current."""
    from alembic import command

    try:
        if current_revision(db) == head_revision():
            return
        command.upgrade(alembic_config(db), "head")
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot migrate the database at {db.url!r}: {exc}") from exc
