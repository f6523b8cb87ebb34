"""The README's "Logs" table names every log event the code emits, at the levels it uses, and
nothing else: operators grep for these names, so a new event must be documented to pass."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ("debug", "info", "warning", "error", "critical")
EVENT = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def events_in_code() -> dict[str, set[str]]:
    """Every ``<sink>.<level>("event_name", ...)`` call under src/, with its levels."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and EVENT.fullmatch(node.args[0].value)
            ):
                continue
            found.setdefault(node.args[0].value, set()).add(node.func.attr)
    return found


def logs_table() -> dict[str, str]:
    """Event name -> the level cell of its row, from the table under "## Logs"."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Logs\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert section is not None, "README.md has no '## Logs' section"
    rows: dict[str, str] = {}
    for line in section.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] in ("event", "---"):
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            rows[name] = cells[1]
    return rows


def test_the_source_is_scanned() -> None:
    events = events_in_code()
    # Multi-line calls and bound sinks are found too (guards against a scan that finds nothing).
    assert {"btp_auth", "connector_failed", "packet_processor_failed"} <= set(events)
    assert events["btp_auth"] == {"info", "warning"}


def test_every_log_event_is_in_the_readme_logs_table_at_its_levels() -> None:
    table = logs_table()
    events = events_in_code()
    missing = sorted(set(events) - set(table))
    assert not missing, f"log events missing from README.md's Logs table: {missing}"
    wrong = {
        name: sorted(levels - set(re.findall(r"[a-z]+", table[name])))
        for name, levels in events.items()
        if not levels <= set(re.findall(r"[a-z]+", table[name]))
    }
    assert not wrong, f"levels used in the code but not in the Logs table: {wrong}"
    stale = sorted(set(table) - set(events))
    assert not stale, f"README.md's Logs table names events nothing logs: {stale}"
