"""Packet processors: the steps that turn a Prepare into a Fulfill or Reject.

Each step is a ``PacketProcessor`` that may wrap the next. The order is written once, in
``app/container.py``. ``ErrorBoundary`` is always outermost, and the BTP server applies it
itself: it is the one place where an unexpected exception, or a processor that returns something
other than a Fulfill or Reject, becomes a ``T00`` Reject, so every accepted Prepare gets exactly
one answer.
"""

from __future__ import annotations

from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Prepare, Reject, Reply
from connector.domain.ports import LogSink, NullSink, PacketProcessor


class RejectAll:
    """Rejects every Prepare with F02 Unreachable: the processor until routing exists."""

    def __init__(self, ilp_address: str) -> None:
        self._address = ilp_address

    async def process(self, prepare: Prepare, peer_id: str) -> Reply:
        return Reject(
            IlpErrorCode.F02_UNREACHABLE, self._address, f"no route to {prepare.destination}"
        )


class ErrorBoundary:
    """Turns an exception from the chain into a T00 Reject triggered by this node.

    The message stays generic: exception text can carry internals, so it goes to the log only.
    """

    def __init__(
        self, inner: PacketProcessor, ilp_address: str, log: LogSink | None = None
    ) -> None:
        self._inner = inner
        self._address = ilp_address
        self._log = log or NullSink()

    async def process(self, prepare: Prepare, peer_id: str) -> Reply:
        try:
            reply = await self._inner.process(prepare, peer_id)
        except Exception as exc:
            return self._failed(peer_id, type(exc).__name__, str(exc))
        if not isinstance(reply, Fulfill | Reject):
            return self._failed(peer_id, "InvalidReply", f"processor returned {type(reply)!r}")
        return reply

    def _failed(self, peer_id: str, error: str, detail: str) -> Reject:
        self._log.error("packet_processor_failed", peerId=peer_id, error=error, detail=detail[:200])
        return Reject(IlpErrorCode.T00_INTERNAL_ERROR, self._address, "internal error")
