"""The pipeline runner: order of the way in and the way out, exactly one answer per request, and
the one place where a failure becomes T00."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, ClassVar

from connector.domain.accounts import Account, Relation
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject, Reply
from connector.domain.pipeline import WAIT, PacketRequest, Pipeline, Step, StepResult
from tests.contract.conftest import GUARD
from tests.fakes import FULFILLMENT, RecordingLogSink, make_prepare

NODE = "test.node"
ALICE = Account.of("alice", Relation.CHILD)
FULFILL = Fulfill(FULFILLMENT, b"done")


class RecordingOrigin:
    """Where the requests came from: records every answer it is given."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Reply, bytes | None]] = []
        self.answered = asyncio.Event()

    def answer(self, request_id: int, reply: Reply, raw: bytes | None) -> None:
        self.answers.append((request_id, reply, raw))
        self.answered.set()

    @property
    def replies(self) -> list[Reply]:
        return [reply for _, reply, _ in self.answers]


class Recorder:
    """A step that records ``prepare:<label>`` and ``reply:<label>`` in a shared journal."""

    name: ClassVar[str] = "recorder"

    def __init__(
        self,
        label: str,
        journal: list[str],
        result: StepResult = None,
        reply: Reply | None = None,
    ) -> None:
        self.label = label
        self.journal = journal
        self.result = result
        self.replacement = reply  # what on_reply returns instead of the reply it saw
        self.seen_replies: list[Reply] = []

    def on_prepare(self, req: PacketRequest) -> StepResult:
        self.journal.append(f"prepare:{self.label}")
        return self.result

    def on_reply(self, req: PacketRequest, reply: Reply) -> Reply:
        self.journal.append(f"reply:{self.label}")
        self.seen_replies.append(reply)
        return reply if self.replacement is None else self.replacement


class Raises:
    name: ClassVar[str] = "raises"

    def on_prepare(self, req: PacketRequest) -> StepResult:
        raise RuntimeError("secret internals")


class ReturnsNonsense:
    name: ClassVar[str] = "nonsense"

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return "not a reply"  # type: ignore[return-value]


class Waits:
    """Takes the request (WAIT); the test resumes it. Can resume before returning WAIT."""

    name: ClassVar[str] = "waits"

    def __init__(self, resume_now: Reply | None = None) -> None:
        self.taken: list[PacketRequest] = []
        self.resume_now = resume_now

    def on_prepare(self, req: PacketRequest) -> StepResult:
        self.taken.append(req)
        if self.resume_now is not None:
            req.resume(self.resume_now)
        return WAIT


class AwaitsIo:
    """A step that awaits I/O: returns a coroutine that finishes once ``release`` is set."""

    name: ClassVar[str] = "awaits_io"

    def __init__(self, result: Reply | None) -> None:
        self.result = result
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return self._io()

    async def _io(self) -> Reply | None:
        self.started.set()
        await self.release.wait()
        return self.result


class RecordingSpawn:
    """The pipeline's spawn: records each coroutine and schedules it as a task."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Future[None]] = []

    def __call__(self, coro: Coroutine[Any, Any, None]) -> object:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task


def no_spawn(coro: Coroutine[Any, Any, None]) -> object:
    coro.close()
    raise AssertionError("a synchronous pipeline must not spawn a task")


def pipeline(
    steps: list[Step], spawn: Any = no_spawn, log: RecordingLogSink | None = None
) -> Pipeline:
    return Pipeline(steps, NODE, spawn, log)


def handle(p: Pipeline, origin: RecordingOrigin, request_id: int = 7) -> PacketRequest:
    return p.handle(origin, request_id, ALICE, make_prepare(), b"raw prepare")


def assert_t00(reply: Reply) -> None:
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == (IlpErrorCode.T00_INTERNAL_ERROR, NODE)


# --- order --------------------------------------------------------------------------------------


def test_steps_run_in_list_order_and_the_reply_passes_back_innermost_first() -> None:
    journal: list[str] = []
    steps: list[Step] = [
        Recorder("a", journal),
        Recorder("b", journal),
        Recorder("c", journal, result=FULFILL),
        Recorder("d", journal),
    ]
    origin = RecordingOrigin()
    handle(pipeline(steps), origin)
    assert journal == ["prepare:a", "prepare:b", "prepare:c", "reply:b", "reply:a"]
    assert origin.answers == [(7, FULFILL, None)]


def test_names_lists_the_steps_outermost_first() -> None:
    class First(Recorder):
        name: ClassVar[str] = "first"

    class Second(Recorder):
        name: ClassVar[str] = "second"

    journal: list[str] = []
    assert pipeline([Second("x", journal), First("y", journal)]).names == ["second", "first"]


def test_a_synchronous_pipeline_answers_before_handle_returns() -> None:
    origin = RecordingOrigin()
    req = handle(pipeline([Recorder("a", [], result=FULFILL)]), origin)
    assert req.done
    assert origin.replies == [FULFILL]


# --- failures become one T00 --------------------------------------------------------------------


def test_a_step_that_raises_gives_exactly_one_t00_and_earlier_steps_see_it() -> None:
    journal: list[str] = []
    outer = Recorder("a", journal)
    after = Recorder("c", journal, result=FULFILL)
    log = RecordingLogSink()
    origin = RecordingOrigin()
    handle(pipeline([outer, Raises(), after], log=log), origin)
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert outer.seen_replies == origin.replies
    assert journal == ["prepare:a", "reply:a"]  # the step after the failure is never reached
    assert "secret internals" not in origin.replies[0].message  # type: ignore[union-attr]
    [failure] = log.events("packet_processor_failed")
    assert (failure["error"], failure["peerId"]) == ("RuntimeError", "alice")


def test_a_step_returning_a_non_reply_gives_t00() -> None:
    journal: list[str] = []
    outer = Recorder("a", journal)
    origin = RecordingOrigin()
    handle(pipeline([outer, ReturnsNonsense()]), origin)
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert outer.seen_replies == origin.replies


def test_a_pipeline_where_no_step_answers_gives_t00_instead_of_hanging() -> None:
    journal: list[str] = []
    origin = RecordingOrigin()
    handle(pipeline([Recorder("a", journal), Recorder("b", journal)]), origin)
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert journal == ["prepare:a", "prepare:b", "reply:b", "reply:a"]


def test_an_on_reply_that_raises_gives_t00_to_the_steps_outside_it() -> None:
    class BrokenOnReply(Recorder):
        def on_reply(self, req: PacketRequest, reply: Reply) -> Reply:
            raise RuntimeError("boom")

    journal: list[str] = []
    outer = Recorder("a", journal)
    origin = RecordingOrigin()
    handle(pipeline([outer, BrokenOnReply("b", journal), Recorder("c", [], FULFILL)]), origin)
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert_t00(outer.seen_replies[0])


# --- WAIT and resume ----------------------------------------------------------------------------


def test_a_waiting_step_answers_once_on_resume_and_a_second_resume_is_ignored() -> None:
    journal: list[str] = []
    outer = Recorder("a", journal)
    waits = Waits()
    origin = RecordingOrigin()
    handle(pipeline([outer, waits, Recorder("c", journal)]), origin)
    assert origin.answers == []
    [req] = waits.taken
    assert not req.done

    req.resume(FULFILL)
    req.resume(Reject("T01", NODE, "too late"))

    assert origin.answers == [(7, FULFILL, None)]
    assert journal == ["prepare:a", "reply:a"]
    assert req.done


def test_a_step_that_resumes_before_returning_wait_gets_the_reply_phase_right() -> None:
    journal: list[str] = []
    outer = Recorder("a", journal)
    waits = Waits(resume_now=FULFILL)
    origin = RecordingOrigin()
    handle(pipeline([outer, Recorder("b", journal), waits, Recorder("d", journal)]), origin)
    assert origin.answers == [(7, FULFILL, None)]
    # The way out starts just outside the waiting step; the step after it is never reached.
    assert journal == ["prepare:a", "prepare:b", "reply:b", "reply:a"]


def test_raw_reply_bytes_reach_the_origin_when_no_on_reply_replaced_the_reply() -> None:
    waits = Waits()
    origin = RecordingOrigin()
    handle(pipeline([Recorder("a", []), waits]), origin)
    waits.taken[0].resume(FULFILL, b"fulfill as received")
    assert origin.answers == [(7, FULFILL, b"fulfill as received")]


def test_raw_reply_bytes_are_dropped_when_an_on_reply_replaced_the_reply() -> None:
    replaced = Reject("F05", NODE, "wrong fulfillment")
    waits = Waits()
    origin = RecordingOrigin()
    handle(pipeline([Recorder("a", [], reply=replaced), Recorder("b", []), waits]), origin)
    waits.taken[0].resume(FULFILL, b"fulfill as received")
    assert origin.answers == [(7, replaced, None)]


# --- steps that await I/O -----------------------------------------------------------------------


async def test_an_async_step_answers_after_awaiting_through_the_pipelines_spawn() -> None:
    journal: list[str] = []
    outer = Recorder("a", journal)
    io = AwaitsIo(result=FULFILL)
    spawn = RecordingSpawn()
    origin = RecordingOrigin()
    p = pipeline([outer, io, Recorder("c", journal)], spawn=spawn)
    handle(p, origin)
    assert len(spawn.tasks) == 1
    assert origin.answers == []
    async with asyncio.timeout(GUARD):
        await io.started.wait()
    assert origin.answers == []

    io.release.set()
    async with asyncio.timeout(GUARD):
        await origin.answered.wait()
        await spawn.tasks[0]
    assert origin.answers == [(7, FULFILL, None)]
    assert journal == ["prepare:a", "reply:a"]


async def test_an_async_step_that_passes_lets_the_next_step_answer() -> None:
    journal: list[str] = []
    io = AwaitsIo(result=None)
    spawn = RecordingSpawn()
    origin = RecordingOrigin()
    handle(pipeline([Recorder("a", journal), io, Recorder("c", journal, FULFILL)], spawn), origin)
    io.release.set()
    async with asyncio.timeout(GUARD):
        await origin.answered.wait()
    assert origin.replies == [FULFILL]
    assert journal == ["prepare:a", "prepare:c", "reply:a"]


async def test_an_async_step_that_raises_gives_t00() -> None:
    class FailsLater:
        name: ClassVar[str] = "fails_later"

        def on_prepare(self, req: PacketRequest) -> StepResult:
            return self._io()

        async def _io(self) -> Reply | None:
            await asyncio.sleep(0)
            raise RuntimeError("lost the database")

    origin = RecordingOrigin()
    handle(pipeline([FailsLater()], RecordingSpawn()), origin)
    async with asyncio.timeout(GUARD):
        await origin.answered.wait()
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])


async def test_a_cancelled_async_step_still_answers_exactly_once_with_t00() -> None:
    outer = Recorder("a", [])
    io = AwaitsIo(result=FULFILL)
    spawn = RecordingSpawn()
    origin = RecordingOrigin()
    p = pipeline([outer, io], spawn)
    handle(p, origin)
    async with asyncio.timeout(GUARD):
        await io.started.wait()
    [task] = spawn.tasks
    task.cancel()
    async with asyncio.timeout(GUARD):
        await asyncio.wait([task])
    assert task.cancelled()
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert outer.seen_replies == origin.replies  # its holds are released


async def test_an_async_step_cancelled_before_its_task_first_runs_still_answers_once() -> None:
    # Shutdown cancels every task of the links at once: one spawned in the same turn of the
    # event loop has not started yet.
    outer = Recorder("a", [])
    io = AwaitsIo(result=FULFILL)
    spawn = RecordingSpawn()
    origin = RecordingOrigin()
    p = pipeline([outer, io], spawn)
    handle(p, origin)
    [task] = spawn.tasks
    task.cancel()
    async with asyncio.timeout(GUARD):
        await asyncio.wait([task])
    assert origin.answers == []  # the task never ran: nothing in it could answer
    assert p.abandon() == 1  # what shutdown calls once the tasks are cancelled
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert outer.seen_replies == origin.replies
    assert p.abandon() == 0


class Commits:
    """A step that must wait on the way out (a durable commit): its on_reply returns a coroutine
    that finishes once ``release`` is set, or raises ``fail``."""

    name: ClassVar[str] = "commits"

    def __init__(self, journal: list[str], fail: Exception | None = None) -> None:
        self.journal = journal
        self.fail = fail
        self.release = asyncio.Event()

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return None

    def on_reply(self, req: PacketRequest, reply: Reply) -> Any:
        return self._commit(reply)

    async def _commit(self, reply: Reply) -> Reply:
        await self.release.wait()
        self.journal.append("committed")
        if self.fail is not None:
            raise self.fail
        return reply


async def test_an_on_reply_that_waits_holds_the_answer_until_it_is_done() -> None:
    journal: list[str] = []
    outer, commits, inner = Recorder("outer", journal), Commits(journal), Waits()
    spawn, origin = RecordingSpawn(), RecordingOrigin()
    p = pipeline([outer, commits, inner], spawn)
    req = handle(p, origin)
    req.resume(FULFILL, b"raw fulfill")
    await asyncio.sleep(0)
    assert origin.answers == []  # nothing upstream before the commit
    assert journal == ["prepare:outer"]
    commits.release.set()
    async with asyncio.timeout(GUARD):
        await origin.answered.wait()
    assert journal == ["prepare:outer", "committed", "reply:outer"]
    assert origin.answers == [(7, FULFILL, b"raw fulfill")]  # unchanged: the raw bytes too


async def test_an_on_reply_that_fails_while_waiting_gives_t00_to_the_steps_outside() -> None:
    journal: list[str] = []
    outer = Recorder("outer", journal)
    commits = Commits(journal, fail=RuntimeError("disk full"))
    inner = Waits()
    spawn, origin = RecordingSpawn(), RecordingOrigin()
    p = pipeline([outer, commits, inner], spawn)
    handle(p, origin).resume(FULFILL)
    commits.release.set()
    async with asyncio.timeout(GUARD):
        await origin.answered.wait()
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert_t00(outer.seen_replies[0])


async def test_abandon_answers_a_request_whose_on_reply_is_still_waiting() -> None:
    journal: list[str] = []
    outer, commits, inner = Recorder("outer", journal), Commits(journal), Waits()
    spawn, origin = RecordingSpawn(), RecordingOrigin()
    p = pipeline([outer, commits, inner], spawn)
    handle(p, origin).resume(FULFILL)
    [task] = spawn.tasks
    task.cancel()
    async with asyncio.timeout(GUARD):
        await asyncio.wait([task])
    assert origin.answers == []  # the commit never ran: nothing may go upstream by itself
    assert p.abandon() == 1  # what shutdown calls once the tasks are cancelled
    assert len(origin.answers) == 1
    assert_t00(origin.replies[0])
    assert p.abandon() == 0


class SharedFuture:
    """A step whose answer (on the way in or out) is one future shared by many requests, as a
    batched commit would give: waiting on it costs a callback, not a task."""

    name: ClassVar[str] = "shared_future"

    def __init__(self, journal: list[str], on_the_way_out: bool) -> None:
        self.journal = journal
        self.out = on_the_way_out
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_prepare(self, req: PacketRequest) -> StepResult:
        return None if self.out else self.future

    def on_reply(self, req: PacketRequest, reply: Reply) -> Any:
        self.journal.append("reply:shared")
        return self.future if self.out else reply


async def test_a_shared_future_on_the_way_in_costs_no_task_and_answers_every_request() -> None:
    journal: list[str] = []
    shared = SharedFuture(journal, on_the_way_out=False)
    answer = Recorder("answer", journal, result=FULFILL)
    origin = RecordingOrigin()
    p = pipeline([shared, answer])  # no_spawn: any task fails the test
    for request_id in range(3):
        handle(p, origin, request_id)
    assert origin.answers == []
    shared.future.set_result(None)  # pass: the next step answers each
    async with asyncio.timeout(GUARD):
        while len(origin.answers) < 3:  # noqa: ASYNC110 - bounded polling
            await asyncio.sleep(0)
    assert [rid for rid, _, _ in origin.answers] == [0, 1, 2]
    assert origin.replies == [FULFILL] * 3


async def test_a_shared_future_on_the_way_out_holds_every_answer_until_it_is_done() -> None:
    journal: list[str] = []
    outer = Recorder("outer", journal)
    shared = SharedFuture(journal, on_the_way_out=True)
    inner = Waits()
    origin = RecordingOrigin()
    p = pipeline([outer, shared, inner])
    for request_id in range(3):
        handle(p, origin, request_id)
    for req in inner.taken:
        req.resume(FULFILL, b"raw")
    await asyncio.sleep(0)
    assert origin.answers == []  # nothing upstream before the batch is done
    shared.future.set_exception(RuntimeError("commit failed"))
    async with asyncio.timeout(GUARD):
        while len(origin.answers) < 3:  # noqa: ASYNC110 - bounded polling
            await asyncio.sleep(0)
    for reply in origin.replies:
        assert_t00(reply)  # a failed commit never lets a Fulfill through
    assert p.abandon() == 0
