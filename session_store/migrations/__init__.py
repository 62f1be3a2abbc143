"""Alembic migrations for the session store; applied by `EventStore.migrate()`."""
