"""A BTP endpoint for clients of a connector (the demo's sender and receiver): dial, authenticate,
answer incoming Prepares with a function, and send Prepares awaiting each reply.

Built from the connector's own ``BtpLink``: incoming Prepares go through a one-step pipeline that
calls ``answer``; outgoing ones through a one-step pipeline that sends on the link.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import ClassVar

from connector.adapters.clock import SystemClock
from connector.app.link import BtpLink
from connector.app.links import LinkContext, Links, ServerLimits
from connector.domain.accounts import Account, Accounts, Relation
from connector.domain.admission import Admission
from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.btp.session import Role
from connector.domain.ilp.packets import IlpErrorCode, Prepare, Reject, Reply
from connector.domain.pipeline import WAIT, PacketRequest, Pipeline, StepResult
from connector.domain.ports import Connection, LogSink, NullSink
from connector.domain.secret import Secret


class _Answer:
    name: ClassVar[str] = "answer"

    def __init__(self, answer: Callable[[Prepare], Reply]) -> None:
        self._answer = answer

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return self._answer(req.prepare)


class _SendOnLink:
    name: ClassVar[str] = "send"

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def on_prepare(self, req: PacketRequest) -> StepResult:
        refusal = self._endpoint.link.request(req)
        return WAIT if refusal is None else refusal


class _NoSecrets:
    def secret_for(self, peer_id: str) -> Secret | None:
        return None

    def accepted(self, peer_id: str) -> tuple[Secret, ...]:
        return ()

    def missing_reason(self, peer_id: str) -> str:
        return "an endpoint accepts no peer"

    def peer_ids(self) -> list[str]:
        return []


class Endpoint:
    def __init__(
        self,
        conn: Connection,
        address: str,
        answer: Callable[[Prepare], Reply] | None = None,
        log: LogSink | None = None,
    ) -> None:
        clock = SystemClock()
        log = log or NullSink()
        links = Links(clock, log, address)

        def refuse(prepare: Prepare) -> Reply:
            return Reject(IlpErrorCode.F02_UNREACHABLE, address, "this endpoint only sends")

        incoming = Pipeline([_Answer(answer or refuse)], address, links.spawn, log)
        self._outgoing = Pipeline([_SendOnLink(self)], address, links.spawn, log)
        accounts = Accounts(address, [Account.of("connector", Relation.PARENT)])
        ctx = LinkContext(
            incoming,
            links,
            accounts,
            Admission(AuthPolicy(_NoSecrets()), AuthThrottle()),
            clock,
            log,
            address,
            ServerLimits(),
        )
        self._account = accounts.configured["connector"]
        self.link = BtpLink(ctx, conn, Role.CLIENT, peer_id="connector")
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count()

    async def open(self, username: str, secret: Secret, guard: float = 30.0) -> None:
        """Authenticate; raises ``ConnectionError`` when refused."""
        self.link.start(username, secret)
        async with asyncio.timeout(guard):
            closed = asyncio.ensure_future(self.link.closed.wait())
            opened = asyncio.ensure_future(self.link.opened.wait())
            await asyncio.wait([opened, closed], return_when=asyncio.FIRST_COMPLETED)
            opened.cancel()
            closed.cancel()
        if not self.link.opened.is_set():
            raise ConnectionError("authentication refused")

    async def send(self, prepare: Prepare) -> Reply:
        """Send ``prepare`` to the connector and wait for its Fulfill or Reject (a T01 Reject
        when the connection drops, R00 at the Prepare's expiry)."""
        request_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._outgoing.handle(self, request_id, self._account, prepare)
        return await future

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(reply)

    def stop(self, reason: str) -> None:
        self.link.stop(reason)
