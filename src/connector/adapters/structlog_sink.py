"""Logging through structlog: one JSON object a line in production, readable in a terminal.

``configure_logging`` is called once by the entrypoint. The structlog logger it returns already
has the ``LogSink`` shape (``bind``, ``debug`` … ``error``); levels below the configured one cost
a no-op call, so per-packet debug lines are free at info level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from connector.domain.ports import LogSink

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Keys that must never carry a value into a log line, whatever a caller passes by mistake.
_SECRET_KEYS = frozenset(
    {"token", "secret", "password", "auth_token", "authToken", "authorization"}
)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog globally: ``fmt`` is ``json``, ``console`` or ``auto`` (console on a
    terminal, JSON otherwise). Logs go to ``stream`` (stderr by default)."""
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard library (websockets: handshake failures, and so on):
    # render those records the same way, one line each, at warning and above.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))


def node_logger(node_id: str) -> LogSink:
    """The root logger of this node: every line carries ``nodeId``."""
    logger: LogSink = structlog.get_logger("connector").bind(nodeId=node_id)
    return logger
