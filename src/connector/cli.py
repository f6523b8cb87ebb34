"""The ``connector`` command's entry point, kept free of imports: ``SIGHUP`` is ignored before
anything else loads, so a reload signal sent while the process starts (imports take a moment)
never kills it; the running node then handles ``SIGHUP`` itself (``app/main.py``)."""

from __future__ import annotations

import signal


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from connector.app.main import main as run

    return run(argv)
