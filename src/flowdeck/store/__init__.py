"""Storage: SQLAlchemy tables, queries and Alembic migrations, for SQLite and PostgreSQL."""
