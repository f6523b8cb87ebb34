"""``connector demo``: three processes, packets through, counts printed, everything stopped."""

from __future__ import annotations

import asyncio
import re
import sys

from tests.integration.helpers import ROOT


async def test_demo_sends_packets_through_three_processes_and_reports() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "demo",
        "--count",
        "300",
        "--in-flight",
        "20",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "sent 300, fulfilled 300, rejected 0, invalid fulfills 0" in text
    assert re.search(r"\d+ packets/s with 20 in flight", text)
