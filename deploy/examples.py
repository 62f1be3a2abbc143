"""The shipped examples `keel run --example NAME` starts: each a directory of `examples/`
holding `session.json`, the body of `POST /v1/sessions` as a user would send it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

EXAMPLES_DIR: Final = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES: Final = ("three-roles",)


def example_session(name: str) -> dict[str, Any]:
    """The session body of example `name` (one of `EXAMPLES`)."""
    body: dict[str, Any] = json.loads(
        (EXAMPLES_DIR / name.replace("-", "_") / "session.json").read_text()
    )
    return body
