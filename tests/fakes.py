"""Small fakes of our ports that record what they saw (no unittest.mock of our own classes)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar

from connector.domain.ilp.packets import Fulfill, Prepare, Reject, Reply
from connector.domain.pipeline import PacketRequest
from connector.domain.secret import Secret

START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """Time that moves only when a test calls ``advance``; sleeps and timeouts follow it."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []
        self._timeouts: list[_FakeTimeout] = []
        self._timers: list[_FakeTimer] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - START).total_seconds()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + timedelta(seconds=seconds), future))
        if seconds <= 0:
            future.set_result(None)
        await future

    def timeout(self, seconds: float) -> _FakeTimeout:
        return _FakeTimeout(self, self._now + timedelta(seconds=seconds))

    def call_later(self, seconds: float, callback: Callable[[], None]) -> _FakeTimer:
        timer = _FakeTimer(self._now + timedelta(seconds=seconds), callback)
        self._timers.append(timer)
        if seconds <= 0:
            asyncio.get_running_loop().call_soon(self._fire_due)
        return timer

    def _fire_due(self) -> None:
        for timer in list(self._timers):
            if timer.deadline <= self._now:
                self._timers.remove(timer)
                if not timer.cancelled:
                    timer.callback()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._fire_due()
        for deadline, future in list(self._sleepers):
            if deadline <= self._now:
                self._sleepers.remove((deadline, future))
                if not future.done():
                    future.set_result(None)
        for scope in list(self._timeouts):
            if scope.deadline <= self._now:
                scope.expire()

    @property
    def sleeping(self) -> int:
        """Tasks blocked in ``sleep`` right now."""
        return len([s for s in self._sleepers if not s[1].done()])

    @property
    def waiting(self) -> int:
        """How many sleeps and timeouts are pending: lets a test wait until the code under test
        is blocked on the clock before it advances time."""
        return (
            len([s for s in self._sleepers if not s[1].done()])
            + len(self._timeouts)
            + len([t for t in self._timers if not t.cancelled])
        )


class _FakeTimer:
    def __init__(self, deadline: datetime, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _FakeTimeout:
    def __init__(self, clock: FakeClock, deadline: datetime) -> None:
        self.clock = clock
        self.deadline = deadline
        self._inner = asyncio.timeout(None)

    async def __aenter__(self) -> None:
        await self._inner.__aenter__()
        self.clock._timeouts.append(self)
        if self.deadline <= self.clock.now():
            self.expire()

    def expire(self) -> None:
        if self in self.clock._timeouts:
            self.clock._timeouts.remove(self)
        self._inner.reschedule(asyncio.get_running_loop().time())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self in self.clock._timeouts:
            self.clock._timeouts.remove(self)
        return await self._inner.__aexit__(exc_type, exc, tb)


class RecordingLogSink:
    """Records every log call as a dict: ``{"event": ..., "level": ..., **bound, **fields}``."""

    def __init__(self, records: list[dict[str, Any]] | None = None, **bound: Any) -> None:
        self.records: list[dict[str, Any]] = [] if records is None else records
        self._bound = bound

    def bind(self, **fields: Any) -> RecordingLogSink:
        return RecordingLogSink(self.records, **{**self._bound, **fields})

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.records.append({"event": event, "level": level, **self._bound, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, fields)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == name]


class FakeSecretStore:
    """Secrets from dicts the test may change between uses: ``previous`` holds the second
    secret accepted during a rotation."""

    def __init__(self, secrets: dict[str, str], previous: dict[str, str] | None = None) -> None:
        self.secrets = secrets
        self.previous = previous or {}

    def secret_for(self, peer_id: str) -> Secret | None:
        value = self.secrets.get(peer_id)
        return Secret(value.encode()) if value else None

    def accepted(self, peer_id: str) -> tuple[Secret, ...]:
        current = self.secret_for(peer_id)
        previous = self.previous.get(peer_id)
        if current is None:
            return ()
        return (current, Secret(previous.encode())) if previous else (current,)

    def missing_reason(self, peer_id: str) -> str:
        return f"no secret for {peer_id}"

    def peer_ids(self) -> list[str]:
        return sorted(peer for peer, value in self.secrets.items() if value)


FULFILLMENT = bytes(range(32))
CONDITION = hashlib.sha256(FULFILLMENT).digest()


def make_prepare(
    clock: FakeClock | None = None,
    *,
    expires_in: float = 30.0,
    destination: str = "test.connector.bob",
    amount: int = 100,
    data: bytes = b"hello",
) -> Prepare:
    now = clock.now() if clock is not None else datetime.now(UTC)
    expiry = now + timedelta(seconds=expires_in)
    return Prepare(
        amount,
        expiry.replace(microsecond=expiry.microsecond // 1000 * 1000),
        CONDITION,
        destination,
        data,
    )


class FakeProcessor:
    """A pipeline step that answers by a rule; can hold packets until released, or raise.
    Records what it saw as ``(peer_id, prepare)``."""

    name: ClassVar[str] = "fake"

    def __init__(self, rule: Callable[[Prepare], Reply] | None = None) -> None:
        self.rule: Callable[[Prepare], Any] = rule or (lambda prepare: Fulfill(FULFILLMENT, b"ok"))
        self.seen: list[tuple[str, Prepare]] = []
        self.hold = False
        self.released = asyncio.Event()
        self.started = 0
        self.raises: BaseException | None = None

    def on_prepare(self, req: PacketRequest) -> Any:
        self.seen.append((req.source.id, req.prepare))
        self.started += 1
        if self.raises is not None:
            raise self.raises
        if self.hold:
            return self._held(req.prepare)
        return self.rule(req.prepare)

    async def _held(self, prepare: Prepare) -> Any:
        await self.released.wait()
        return self.rule(prepare)


def reject_rule(code: str = "F99") -> Callable[[Prepare], Reply]:
    return lambda prepare: Reject(code, "test.bob", "nope")
