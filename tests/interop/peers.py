"""The reference JavaScript peers as processes: ilp-plugin-btp clients and receivers, and the
reference connector ilp-connector@23.0.2. Every process is bounded in time and always stopped."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.integration.helpers import GUARD, ROOT

INTEROP = ROOT / "interop"


def node_binary() -> str:
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the interop tests"
    assert (INTEROP / "node_modules" / "ilp-plugin-btp").is_dir(), (
        "run scripts/setup --dev (npm ci in interop/) first"
    )
    return node


async def run_client(url: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run interop/client.js to completion; its exit code and JSON lines."""
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        str(INTEROP / "client.js"),
        url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(GUARD):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode is not None
    return proc.returncode, lines


def summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    (line,) = [x for x in lines if x.get("event") == "summary"]
    return line


class NodeProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    async def wait_for(self, text: str) -> None:
        async with asyncio.timeout(GUARD):
            while not any(text in line for line in self.lines):
                self._check_alive()
                await asyncio.sleep(0.02)

    async def wait_listening(self, port: int) -> None:
        async with asyncio.timeout(GUARD):
            while True:
                self._check_alive()
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                return

    def _check_alive(self) -> None:
        if self.proc.returncode is not None:
            raise AssertionError("process exited early:\n" + "\n".join(self.lines[-30:]))


@asynccontextmanager
async def node_process(
    args: list[str],
    ready: str | int,
    env: dict[str, str] | None = None,
    cwd: Path = INTEROP,
) -> AsyncIterator[NodeProcess]:
    """Start a Node script; ready when it prints ``ready`` (a text) or listens on it (a port)."""
    proc = await asyncio.create_subprocess_exec(
        node_binary(),
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    node = NodeProcess(proc)
    try:
        if isinstance(ready, int):
            await node.wait_listening(ready)
        else:
            await node.wait_for(ready)
        yield node
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        node._reader.cancel()


@asynccontextmanager
async def receiver(*args: str) -> AsyncIterator[NodeProcess]:
    """interop/receiver.js: fulfills every Prepare made by client.js. A listener is ready when its
    port accepts connections (ilp-plugin-btp's connect() waits for the first client)."""
    ready: str | int = int(args[1]) if args[0] == "--listen" else '"event":"ready"'
    async with node_process([str(INTEROP / "receiver.js"), *args], ready) as proc:
        yield proc


def btp_account(relation: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "relation": relation,
        "plugin": "ilp-plugin-btp",
        "assetCode": "USD",
        "assetScale": 9,
        "options": options,
    }


@asynccontextmanager
async def reference_connector(
    ilp_address: str,
    accounts: dict[str, Any],
    routes: list[dict[str, str]],
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[NodeProcess]:
    """ilp-connector@23.0.2, one-to-one rates with no spread, configured through its env."""
    env = {
        "CONNECTOR_ILP_ADDRESS": ilp_address,
        "CONNECTOR_BACKEND": "one-to-one",
        "CONNECTOR_SPREAD": "0",
        "CONNECTOR_STORE": "memory",
        "CONNECTOR_ACCOUNTS": json.dumps(accounts),
        "CONNECTOR_ROUTES": json.dumps(routes),
        "CONNECTOR_INITIAL_CONNECT_TIMEOUT": "1500",
        "DEBUG": "connector:app,connector:ilp-plugin-btp*",
        **(extra_env or {}),
    }
    script = INTEROP / "node_modules" / "ilp-connector" / "dist" / "index.js"
    async with node_process([str(script)], "connector ready", env) as proc:
        yield proc
