"""The in-memory transport must behave as the WebSocket one does where the core can tell."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from connector.adapters.memory_transport import connection_pair

GUARD = 5.0


@dataclass
class Recorder:
    seen: list[object] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_message(self, data: bytes | str) -> None:
        self.seen.append(data)

    def on_closing(self, code: int, reason: str) -> None:
        self.seen.append(("closing", code))

    def on_closed(self, code: int, reason: str) -> None:
        self.seen.append(("closed", code))
        self.closed.set()


async def test_messages_sent_before_an_oversized_one_are_delivered_before_the_1009() -> None:
    # On a WebSocket, frames before the oversized one are read (and their Prepares answered)
    # before websockets refuses the big one with 1009. In memory, the 1009 happens at send time
    # and the messages already queued for the receiver are never delivered.
    client, server = connection_pair(max_size=100)
    handler = Recorder()
    server.start(handler)
    client.send(b"small")
    client.send(b"x" * 200)
    async with asyncio.timeout(GUARD):
        await handler.closed.wait()
    assert handler.seen[:2] == [b"small", ("closing", 1009)], handler.seen
