from __future__ import annotations

import io
import json

import structlog

from connector.adapters.structlog_sink import configure_logging, node_logger


def test_json_lines_carry_node_id_and_redact_secret_keys() -> None:
    out = io.StringIO()
    try:
        configure_logging("info", "json", stream=out)
        log = node_logger("node-a").bind(peerId="alice")
        log.info("btp_auth", success=True, token="hunter2")
        log.debug("btp_message_received", requestId=1)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        structlog.reset_defaults()
    assert len(lines) == 1  # debug is filtered at info
    (line,) = lines
    assert line["event"] == "btp_auth"
    assert line["nodeId"] == "node-a"
    assert line["peerId"] == "alice"
    assert line["token"] == "[redacted]"
    assert "hunter2" not in out.getvalue()
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_console_format_is_readable() -> None:
    out = io.StringIO()
    try:
        configure_logging("debug", "console", stream=out)
        node_logger("node-a").debug("btp_message_received", requestId=7)
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    assert "btp_message_received" in text
    assert "requestId=7" in text
    assert not text.lstrip().startswith("{")


def test_library_records_from_the_standard_library_become_json_lines_too() -> None:
    import logging

    out = io.StringIO()
    try:
        configure_logging("info", "json", stream=out)
        logging.getLogger("websockets.server").error("opening handshake failed")
        logging.getLogger("websockets.server").info("below warning: dropped")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert (line["event"], line["level"], line["logger"]) == (
        "opening handshake failed",
        "error",
        "websockets.server",
    )
