"""Alembic environment: migrations run on the database handle flowdeck opened, inside one transaction.

On PostgreSQL an advisory lock serializes servers that start at the same moment.
"""

from alembic import context

from flowdeck.store.tables import metadata

MIGRATION_LOCK = 0x666C6F77  # "flow"

db = context.config.attributes["database"]
with db.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
