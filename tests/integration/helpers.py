"""Real processes and real sockets on 127.0.0.1, each bounded in time and always stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Prepare, Reply

ROOT = Path(__file__).resolve().parents[2]
GUARD = 20.0  # seconds: a hang guard on every wait, never a performance threshold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ConnectorProcess:
    """``python -m connector`` in a child process, logging JSON to a pipe we read."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if event is None or record.get("event") == event:
                out.append(record)
        return out

    async def wait_for(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        async with asyncio.timeout(GUARD):
            while len(self.records(event)) < count:
                if self.proc.returncode is not None:
                    raise AssertionError(f"connector exited early:\n{self.output}")
                await asyncio.sleep(0.02)
        return self.records(event)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        async with asyncio.timeout(GUARD):
            code = await self.proc.wait()
            await self._reader
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@asynccontextmanager
async def connector_process(port: int | None = None, **env: str) -> AsyncIterator[ConnectorProcess]:
    """Start the real entrypoint on ``port`` (a free one by default) on 127.0.0.1; always stopped
    on exit. ``BTP_SERVER_PORT`` is set, so it overrides any port in a configuration file."""
    port = port or free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BTP_", "CONNECTOR_"))},
        "BTP_SERVER_HOST": "127.0.0.1",
        "BTP_SERVER_PORT": str(port),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        "CONNECTOR_STORE_URL": "memory://",  # no file in the checkout (a test may choose one)
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        env=full_env,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    connector = ConnectorProcess(proc, port)
    try:
        await connector.wait_for("btp_server_started")
        yield connector
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        connector._reader.cancel()


class BtpClient:
    """A real WebSocket client speaking raw BTP frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0

    @classmethod
    @asynccontextmanager
    async def connect(cls, port: int) -> AsyncIterator[BtpClient]:
        async with asyncio.timeout(GUARD):
            ws = await connect(f"ws://127.0.0.1:{port}", max_size=None)
        try:
            yield cls(ws)
        finally:
            await ws.close()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def recv_frame(self) -> frames.Frame:
        async with asyncio.timeout(GUARD):
            data = await self.ws.recv()
        assert isinstance(data, bytes)
        return frames.decode(data)

    async def authenticate(self, username: str, token: str) -> frames.Frame:
        request_id = self.new_id()
        await self.ws.send(frames.encode(frames.auth_message(request_id, username, token.encode())))
        return await self.recv_frame()

    async def send_prepare(self, prepare: Prepare) -> int:
        request_id = self.new_id()
        await self.ws.send(frames.encode(frames.ilp_message(request_id, codec.encode(prepare))))
        return request_id

    async def recv_reply(self) -> tuple[int, Reply]:
        frame = await self.recv_frame()
        assert isinstance(frame, frames.Response), frame
        packet = frames.ilp_entry(frame)
        assert packet is not None
        return frame.request_id, codec.decode_reply(packet)

    async def close_code(self) -> tuple[int, str]:
        async with asyncio.timeout(GUARD):
            await self.ws.wait_closed()
        frame = self.ws.protocol.close_rcvd
        assert frame is not None
        return frame.code, frame.reason
