"""The packet pipeline: one ordered list of steps, and that list is what runs.

A Prepare from a peer becomes a ``PacketRequest`` (source account, the Prepare and its wire bytes,
and what the steps decide: next hop, outgoing amount and expiry). The steps run in list order,
outermost first, like middleware:

- on the way in, each step's ``on_prepare`` either passes (returns ``None``), answers (returns a
  Fulfill or Reject: the request goes no further), or takes the request away to answer it later
  (returns ``WAIT``: the last step sends it to the next hop and calls ``req.resume`` with the
  reply); a step that must wait for I/O may return an awaitable, which alone costs a task (a
  future costs a callback; one returned on the way in must be that request's own);
- on the way out, the reply passes back through ``on_reply`` of every step the request passed
  (those before the one that answered or took it), innermost first, so a step that took something
  on the way in (a hold, later) and passed the request on always sees how it ended. A step that
  answers, or whose awaitable fails, has passed nothing on: what it took, it releases itself.

The runner is the one place where an exception or a non-reply becomes a ``T00`` Reject, and it
answers each request exactly once, synchronously when every step is synchronous: no task, future
or timer per packet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, runtime_checkable

from connector.domain.ilp.packets import (
    Fulfill,
    IlpErrorCode,
    Prepare,
    Reject,
    Reply,
    amount_too_large_data,
)
from connector.domain.ports import LogSink, NullSink

if TYPE_CHECKING:
    from connector.domain.accounts import Account


class _Wait:
    __slots__ = ()

    def __repr__(self) -> str:
        return "WAIT"


#: Returned by ``on_prepare`` when the step will call ``req.resume(reply)`` itself.
WAIT: Final = _Wait()

StepResult = Reply | None | _Wait | Awaitable[Reply | None]
#: Runs a coroutine in the background (the app's task owner): the only way a step costs a task.
Spawn = Callable[[Coroutine[Any, Any, None]], object]


_REPLIES = frozenset({Fulfill, Reject})


class Origin(Protocol):
    """Where a request came from: takes its one answer (``raw`` is the reply's wire bytes when
    they can be relayed as they are)."""

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None: ...


class Step(Protocol):
    """One concern of the pipeline. ``name`` is what the order test reads."""

    name: ClassVar[str]

    def on_prepare(self, req: PacketRequest) -> StepResult: ...


class ReplyStep(Step, Protocol):
    def on_reply(self, req: PacketRequest, reply: Reply) -> Reply | Awaitable[Reply]:
        """The reply on its way out; an awaitable when the step must wait (only then a task)."""
        ...


@runtime_checkable
class AddressAware(Protocol):
    """A step whose Rejects carry this node's address (``triggeredBy``), or that reads it: told
    once by ``Pipeline.set_ilp_address`` when a node asks its parent for it (IL-DCP). Steps
    keep it as a plain attribute, so no packet pays for the address being late."""

    def set_ilp_address(self, address: str) -> None: ...


class MakesRejects:
    """``AddressAware`` for the steps that keep the address in ``_address``."""

    _address: str

    def set_ilp_address(self, address: str) -> None:
        self._address = address

    def _too_large(self, amount: int, maximum: int) -> Reject:
        """``F08`` with both amounts in its data (RFC-0027), in ilp-connector's words."""
        return Reject(
            IlpErrorCode.F08_AMOUNT_TOO_LARGE,
            self._address,
            f"packet size too large. maxAmount={maximum} actualAmount={amount}",
            amount_too_large_data(amount, maximum),
        )


def _close(pending: Awaitable[Any]) -> None:
    close = getattr(pending, "close", None)
    if close is not None:
        close()  # a coroutine that never ran: no "never awaited" warning


def _resolved_to_none(pending: Awaitable[Any]) -> bool:
    done = getattr(pending, "done", None)
    if done is None or not done() or pending.cancelled():  # type: ignore[attr-defined]
        return False
    return pending.exception() is None and pending.result() is None  # type: ignore[attr-defined]


class PacketRequest:
    """One Prepare on its way through the pipeline. Steps read and set its public fields."""

    __slots__ = (
        "_index",
        "_pipeline",
        "amount_out",
        "done",
        "expires_out",
        "held_out",
        "next_hop",
        "origin",
        "packet",
        "prepare",
        "request_id",
        "source",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        origin: Origin,
        request_id: int,
        source: Account,
        prepare: Prepare,
        packet: bytes | None,
    ) -> None:
        self._pipeline = pipeline
        self._index = 0
        self.origin = origin
        self.request_id = request_id
        self.source = source
        self.prepare = prepare
        #: The Prepare's wire bytes, when it arrived as bytes: relayed with amount and expiry
        #: patched in place instead of re-encoded.
        self.packet = packet
        self.next_hop: Account | None = None
        self.amount_out = prepare.amount
        self.expires_out: datetime = prepare.expires_at
        #: The amount held on the next hop's balance (0: none), settled with the sender's.
        self.held_out = 0
        self.done = False

    def resume(self, reply: Reply, raw: bytes | None = None) -> None:
        """The answer to a request a step took with ``WAIT``: runs the way out and answers the
        origin. Later calls are ignored (exactly one answer)."""
        if not self.done:
            self._pipeline._reply(self, self._index, reply, raw)

    def __repr__(self) -> str:
        return f"PacketRequest({self.request_id}, {self.source.id} -> {self.prepare.destination})"


class Pipeline:
    """Runs ``steps`` (outermost first) for each request. See the module docstring."""

    def __init__(
        self,
        steps: Sequence[Step],
        ilp_address: str,
        spawn: Spawn,
        log: LogSink | None = None,
    ) -> None:
        self.steps: tuple[Step, ...] = tuple(steps)
        self._address = ilp_address
        self._spawn = spawn
        self._log = log or NullSink()
        self._prepares = tuple(step.on_prepare for step in self.steps)
        self._replies = tuple(getattr(step, "on_reply", None) for step in self.steps)
        #: Requests whose step awaits I/O: answered by ``abandon`` if their task never ends.
        self._awaiting: dict[int, tuple[PacketRequest, int, Awaitable[Any]]] = {}
        #: The same on the way out: (request, step index, reply so far, original reply, raw,
        #: awaitable). An awaitable that resolves to None leaves the reply as it was.
        self._unwinding: dict[
            int, tuple[PacketRequest, int, Reply, Reply, bytes | None, Awaitable[Any]]
        ] = {}

    def hold(self, gate: Step) -> None:
        """Until ``set_ilp_address``, only ``gate`` runs, and it answers every Prepare: a node
        that does not know its address yet forwards nothing and serves nobody IL-DCP. The full
        list runs again from the next Prepare on, at no cost per packet."""
        self._prepares = (gate.on_prepare,)
        self._replies = (None,)

    def set_ilp_address(self, address: str) -> None:
        """The node's address is known: every step that needs it takes it, then the steps run
        (ending a ``hold``)."""
        self._address = address
        for step in self.steps:
            if isinstance(step, AddressAware):
                step.set_ilp_address(address)
        self._prepares = tuple(step.on_prepare for step in self.steps)
        self._replies = tuple(getattr(step, "on_reply", None) for step in self.steps)

    @property
    def names(self) -> list[str]:
        """The order that runs, outermost first."""
        return [step.name for step in self.steps]

    def handle(
        self,
        origin: Origin,
        request_id: int,
        source: Account,
        prepare: Prepare,
        packet: bytes | None = None,
    ) -> PacketRequest:
        """Start ``prepare`` down the pipeline; its answer goes to ``origin.answer`` exactly once
        (before this returns when every step it meets is synchronous)."""
        req = PacketRequest(self, origin, request_id, source, prepare, packet)
        self._run(req, 0)
        return req

    def _run(self, req: PacketRequest, start: int) -> None:
        prepares = self._prepares
        for index in range(start, len(prepares)):
            req._index = index  # a step may resume the request before it returns WAIT
            try:
                result = prepares[index](req)
            except Exception as exc:
                self._reply(req, index, self._failed(req, exc), None)
                return
            if result is None:
                continue
            if result is WAIT:
                return
            if type(result) in _REPLIES:
                self._reply(req, index, result, None)  # type: ignore[arg-type]
                return
            if isinstance(result, Awaitable):
                self._awaiting[id(req)] = (req, index, result)
                if hasattr(result, "add_done_callback"):
                    # A future (one shared by a batch, say): a callback, not a task, per request.
                    result.add_done_callback(partial(self._waited, req, index))
                else:
                    self._spawn(self._wait(req, index, result))
                return
            self._reply(req, index, self._invalid(req, result), None)
            return
        # No step answered: a pipeline without a terminal step is a bug, never a hang.
        self._reply(req, len(prepares), self._invalid(req, None), None)

    async def _wait(self, req: PacketRequest, index: int, pending: Awaitable[Any]) -> None:
        try:
            result = await pending
            self._awaiting.pop(id(req), None)
        except Exception as exc:
            self._awaiting.pop(id(req), None)
            self._reply(req, index, self._failed(req, exc), None)
            return
        except BaseException:
            self._awaiting.pop(id(req), None)
            # Cancelled (shutdown): the request is still answered, and the steps it passed see
            # that answer on the way out.
            self._reply(req, index, self._failed(req, RuntimeError("cancelled")), None)
            raise
        if result is None:
            self._run(req, index + 1)
        elif isinstance(result, Fulfill | Reject):
            self._reply(req, index, result, None)
        else:
            self._reply(req, index, self._invalid(req, result), None)

    def abandon(self) -> int:
        """Answer (T00) every request whose step still awaits I/O: for shutdown, once the tasks
        were cancelled, since a task cancelled before it first ran never reaches its own
        ``except``. Returns how many there were."""
        waiting = list(self._awaiting.values())
        self._awaiting.clear()
        for req, index, pending in waiting:
            _close(pending)
            # A future a step returned on the way in is that request's own (a hold waiting for
            # credit, say): cancelled, so that whoever would resolve it knows nobody waits. One
            # that already resolved to None means the step did its part: it sees the answer.
            taken = _resolved_to_none(pending)
            cancel = getattr(pending, "cancel", None)
            if cancel is not None and not taken:
                cancel()
            failed = self._failed(req, RuntimeError("abandoned"))
            self._reply(req, index + 1 if taken else index, failed, None)
        unwinding = list(self._unwinding.values())
        self._unwinding.clear()
        for req, index, _, original, raw, pending in unwinding:
            _close(pending)
            self._unwind(req, index, self._failed(req, RuntimeError("abandoned")), original, raw)
        return len(waiting) + len(unwinding)

    def _reply(self, req: PacketRequest, index: int, reply: Reply, raw: bytes | None) -> None:
        """The way out: ``on_reply`` of the steps before ``index``, innermost first."""
        if req.done:
            return
        req.done = True
        self._unwind(req, index, reply, reply, raw)

    def _unwind(
        self, req: PacketRequest, index: int, reply: Reply, original: Reply, raw: bytes | None
    ) -> None:
        replies = self._replies
        for i in range(index - 1, -1, -1):
            on_reply = replies[i]
            if on_reply is None:
                continue
            try:
                out = on_reply(req, reply)
            except Exception as exc:
                out = self._failed(req, exc)
            if type(out) in _REPLIES:
                reply = out
            elif isinstance(out, Awaitable):
                # A step that must wait on the way out (a durable commit, say): the answer
                # waits with it, so nothing goes upstream before that step is done.
                self._unwinding[id(req)] = (req, i, reply, original, raw, out)
                if hasattr(out, "add_done_callback"):
                    out.add_done_callback(partial(self._unwound, req, i, reply, original, raw))
                else:
                    self._spawn(self._wait_reply(req, i, reply, original, raw, out))
                return
            else:
                reply = self._invalid(req, out)
        req.origin.answer(req.request_id, reply, raw if reply is original else None)

    def _waited(self, req: PacketRequest, index: int, done: Any) -> None:
        """A future a step returned on the way in is done (its ``add_done_callback``)."""
        if self._awaiting.pop(id(req), None) is None:
            return  # abandoned meanwhile: already answered
        try:
            result = done.result()
        except Exception as exc:
            self._reply(req, index, self._failed(req, exc), None)
            return
        except BaseException:  # cancelled
            self._reply(req, index, self._failed(req, RuntimeError("cancelled")), None)
            return
        if result is None:
            self._run(req, index + 1)
        elif type(result) in _REPLIES:
            self._reply(req, index, result, None)
        else:
            self._reply(req, index, self._invalid(req, result), None)

    def _unwound(
        self,
        req: PacketRequest,
        index: int,
        reply: Reply,
        original: Reply,
        raw: bytes | None,
        done: Any,
    ) -> None:
        """A future a step returned on the way out is done."""
        if self._unwinding.pop(id(req), None) is None:
            return
        try:
            out = done.result()
        except Exception as exc:
            out = self._failed(req, exc)
        except BaseException:  # cancelled
            out = self._failed(req, RuntimeError("cancelled"))
        if out is None:
            out = reply  # done, and the reply stays as it was
        elif type(out) not in _REPLIES:
            out = self._invalid(req, out)
        self._unwind(req, index, out, original, raw)

    async def _wait_reply(
        self,
        req: PacketRequest,
        index: int,
        reply: Reply,
        original: Reply,
        raw: bytes | None,
        pending: Awaitable[Any],
    ) -> None:
        try:
            out = await pending
        except Exception as exc:
            out = self._failed(req, exc)
        except BaseException:
            if self._unwinding.pop(id(req), None) is not None:
                self._unwind(
                    req, index, self._failed(req, RuntimeError("cancelled")), original, raw
                )
            raise
        if self._unwinding.pop(id(req), None) is None:
            return  # abandoned meanwhile: already answered
        if out is None:
            out = reply
        elif type(out) not in _REPLIES:
            out = self._invalid(req, out)
        self._unwind(req, index, out, original, raw)

    def _failed(self, req: PacketRequest, exc: Exception) -> Reject:
        # The message stays generic: exception text can carry internals, so it is logged only.
        self._log.error(
            "packet_processor_failed",
            peerId=req.source.id,
            error=type(exc).__name__,
            detail=str(exc)[:200],
        )
        return Reject(IlpErrorCode.T00_INTERNAL_ERROR, self._address, "internal error")

    def _invalid(self, req: PacketRequest, value: object) -> Reject:
        self._log.error(
            "packet_processor_failed",
            peerId=req.source.id,
            error="InvalidReply",
            detail=f"step returned {type(value)!r}",
        )
        return Reject(IlpErrorCode.T00_INTERNAL_ERROR, self._address, "internal error")
