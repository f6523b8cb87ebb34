from __future__ import annotations

from connector.domain.ilp.packets import Fulfill, Reject
from connector.domain.processing import ErrorBoundary, RejectAll
from tests.fakes import FULFILLMENT, FakeProcessor, RecordingLogSink, make_prepare


async def test_reject_all_answers_f02_triggered_by_the_node() -> None:
    reply = await RejectAll("test.a").process(make_prepare(destination="test.x.y"), "alice")
    assert reply == Reject("F02", "test.a", "no route to test.x.y")


async def test_error_boundary_passes_replies_through() -> None:
    inner = FakeProcessor()
    reply = await ErrorBoundary(inner, "test.a").process(make_prepare(), "alice")
    assert reply == Fulfill(FULFILLMENT, b"ok")
    assert inner.seen[0][0] == "alice"


async def test_error_boundary_turns_exceptions_into_t00_and_logs_them() -> None:
    inner = FakeProcessor()
    inner.raises = RuntimeError("database password is hunter2")
    log = RecordingLogSink()
    reply = await ErrorBoundary(inner, "test.a", log).process(make_prepare(), "alice")
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T00", "test.a")
    assert "hunter2" not in reply.message  # exception text stays out of the wire
    (record,) = log.events("packet_processor_failed")
    assert record["error"] == "RuntimeError"
