"""Logs every process writes the same way: one `keel.*` namespace, JSON lines when nobody
reads them on a terminal, and the ids a reader filters by as fields of their own.

A record carries the process (`brain`, `hands`, `gateway`), its instance id (`brain_id`,
`hands_id`, ...), and, while a session or a call is being worked on, `session_id` and
`call_id`, taken from context variables the work sets (`working_on`), so no log line has to
repeat them in its text.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Annotated, Literal

import msgspec
from pythonjsonlogger.json import JsonFormatter

from schemas._settings import setting

SESSION_ID: ContextVar[str | None] = ContextVar("keel_session_id", default=None)
CALL_ID: ContextVar[str | None] = ContextVar("keel_call_id", default=None)
_CONTEXT = (("session_id", SESSION_ID), ("call_id", CALL_ID))


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    format: Annotated[
        Literal["auto", "json", "text"],
        setting(
            "KEEL_LOG_FORMAT", "logs as JSON lines or text; auto: text on a terminal, else JSON"
        ),
    ] = "auto"
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], setting("KEEL_LOG_LEVEL", "least to log")
    ] = "INFO"


@contextlib.contextmanager
def working_on(session_id: str | None = None, call_id: str | None = None) -> Iterator[None]:
    """Every record logged inside (in this task, and tasks it starts) names the session and
    the call."""
    tokens = [
        (var, var.set(value))
        for value, var in ((session_id, SESSION_ID), (call_id, CALL_ID))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _WithContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if getattr(record, name, None) is None and (value := var.get()) is not None:
                setattr(record, name, value)
        return True


class _Text(logging.Formatter):
    """One readable line, the context ids at its end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{name}={getattr(record, name)}" for name, _ in _CONTEXT if hasattr(record, name)]
        return f"{line} [{' '.join(ids)}]" if ids else line


def configure_logging(process: str, instance: str, settings: LogSettings) -> None:
    """Send every record to stderr, as `settings` say; `instance` is the process's id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_WithContext())
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    if as_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "at", "levelname": "level", "name": "logger"},
                static_fields={"process": process, f"{process}_id": instance},
            )
        )
    else:
        handler.setFormatter(_Text("%(asctime)s %(name)s %(message)s"))
    logging.basicConfig(level=settings.level, handlers=[handler], force=True)
