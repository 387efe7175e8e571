"""Alembic environment: runs on the connection `store.db.migrate` hands over."""

from alembic import context
from sqlmodel import SQLModel

import store.tables  # noqa: F401  (registers the tables on the metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through store.db.migrate (or `casebook migrate`)")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
