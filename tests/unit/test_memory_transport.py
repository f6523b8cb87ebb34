"""The in-memory transport delivers like sockets do: in batches, one end after another."""

from __future__ import annotations

import asyncio

from connector.adapters.memory_transport import connection_pair


class Order:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    def on_message(self, data: bytes | str) -> None:
        self.seen.append(self.name)

    def on_closing(self, code: int, reason: str) -> None:
        pass

    def on_closed(self, code: int, reason: str) -> None:
        pass


async def test_a_flood_on_one_connection_does_not_starve_another() -> None:
    seen: list[str] = []
    flood_client, flood_server = connection_pair()
    quiet_client, quiet_server = connection_pair()
    flood_server.start(Order("flood", seen))
    quiet_server.start(Order("quiet", seen))
    for _ in range(500):
        flood_client.send(b"x")
    quiet_client.send(b"y")
    async with asyncio.timeout(5):
        while len(seen) < 501:  # noqa: ASYNC110 - bounded polling
            await asyncio.sleep(0)
    # The quiet peer waits for at most one batch of the flood, not for all of it.
    assert seen.index("quiet") <= 64
