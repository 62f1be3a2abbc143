from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

import session_store
from session_store._tables import SCHEMA_REVISION


def test_the_declared_revision_is_the_newest_migration() -> None:
    """A store at SCHEMA_REVISION skips Alembic at start: it must be the real head."""
    config = Config()
    config.set_main_option(
        "script_location", str(Path(session_store.__file__).parent / "migrations")
    )
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
