"""The BTP server's behaviour as a peer sees it, on every transport (see conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Reject
from tests.contract.conftest import MAX_FRAME, NODE, SECRETS, Harness
from tests.fakes import FULFILLMENT, make_prepare, reject_rule

# --- handshake ----------------------------------------------------------------------------------


async def test_auth_then_prepare_gets_the_processors_reply_on_the_same_request_id(
    harness: Harness,
) -> None:
    peer = await harness.connect()
    reply = await peer.authenticate("alice", SECRETS["alice"])
    assert isinstance(reply, frames.Response)
    assert reply.protocol_data == ()
    prepare = make_prepare(harness.clock)
    request_id = await peer.send_prepare(prepare)
    assert await peer.recv_reply() == (request_id, Fulfill(FULFILLMENT, b"ok"))
    assert harness.processor.seen == [("alice", prepare)]
    (auth,) = harness.log.events("btp_auth")
    assert auth["success"] is True
    assert auth["peerId"] == "alice"


@pytest.mark.parametrize(
    ("username", "token", "reason"),
    [
        ("alice", "wrong", "invalid auth_token"),
        ("mallory", "alice-secret-1", "invalid auth_token"),
        ("", "alice-secret-1", "auth_username is required"),
    ],
)
async def test_failed_auth_gets_f00_then_a_policy_close(
    harness: Harness, username: str, token: str, reason: str
) -> None:
    peer = await harness.connect()
    reply = await peer.authenticate(username, token)
    assert isinstance(reply, frames.Error)
    assert (reply.code, reply.name, reply.data) == ("F00", "NotAcceptedError", reason.encode())
    assert await peer.closed() == (1008, reason)
    assert harness.processor.seen == []
    (auth,) = harness.log.events("btp_auth")
    assert auth["success"] is False
    assert auth["reason"] == reason


async def test_missing_auth_token_entry_is_refused(harness: Harness) -> None:
    peer = await harness.connect()
    await peer.send_frame(
        frames.Message(
            3,
            (
                frames.ProtocolDataEntry("auth", 0, b""),
                frames.ProtocolDataEntry("auth_username", 1, b"alice"),
            ),
        )
    )
    reply = await peer.recv_frame()
    assert isinstance(reply, frames.Error)
    assert reply.request_id == 3
    assert b"auth_token" in reply.data
    code, _ = await peer.closed()
    assert code == 1008


async def test_any_other_first_frame_gets_an_error_and_a_close(harness: Harness) -> None:
    peer = await harness.connect()
    await peer.send_prepare(make_prepare(harness.clock))
    reply = await peer.recv_frame()
    assert isinstance(reply, frames.Error)
    assert reply.code == "F00"
    code, _ = await peer.closed()
    assert code == 1008
    assert harness.processor.seen == []


async def test_unreadable_first_frame_gets_no_reply_and_a_close(harness: Harness) -> None:
    peer = await harness.connect()
    await peer.send(b"\x06\x00\x00")
    code, _ = await peer.closed()
    assert code == 1002


async def test_no_auth_within_the_deadline_closes(harness: Harness) -> None:
    peer = await harness.connect()
    await harness.until_clock_waited_on()
    harness.clock.advance(5.0)
    assert await peer.closed() == (1008, "authentication timed out")


async def test_repeated_failures_from_one_host_are_slowed_down(harness: Harness) -> None:
    first = await harness.connect()
    assert isinstance(await first.authenticate("alice", "bad"), frames.Error)
    second = await harness.connect()
    await second.send_frame(frames.auth_message(5, "alice", b"bad"))
    await harness.until(
        lambda: len(harness.log.events("btp_auth")) == 2, "the server holds the refusal back"
    )
    await asyncio.sleep(0.01)
    assert second.pending() == 0  # nothing before the delay has passed
    harness.clock.advance(0.5)
    reply = await second.recv_frame()
    assert isinstance(reply, frames.Error)
    assert reply.request_id == 5
    assert [r["delay"] for r in harness.log.events("btp_auth")] == [0.0, 0.5]
    # A success clears only that peer's own failures: guesses at another peer's secret from
    # this host stay slowed down (one valid credential must not reset an attacker's count).
    await harness.connect_as("alice")
    third = await harness.connect()
    await third.send_frame(frames.auth_message(6, "bob", b"guess"))
    await harness.until(lambda: len(harness.log.events("btp_auth")) == 4, "third refusal")
    assert harness.log.events("btp_auth")[-1]["delay"] == 1.0
    harness.clock.advance(1.0)
    assert isinstance(await third.recv_frame(), frames.Error)


async def test_a_second_connection_for_a_peer_replaces_the_first(harness: Harness) -> None:
    old = await harness.connect_as("alice")
    new = await harness.connect_as("alice")
    assert await old.closed() == (1000, "replaced by a newer connection for this peer")
    request_id = await new.send_prepare(make_prepare(harness.clock))
    assert (await new.recv_reply())[0] == request_id
    await harness.until(lambda: len(harness.server.connections) == 1, "old connection gone")
    assert harness.server.peers["alice"].conn is not None


# --- packets ------------------------------------------------------------------------------------


async def test_invalid_prepare_gets_an_f01_reject_and_the_session_goes_on(
    harness: Harness,
) -> None:
    peer = await harness.connect_as()
    bad = codec.encode(make_prepare(harness.clock))[:-3]  # truncated
    request_id = await peer.send_prepare(bad)
    got_id, reply = await peer.recv_reply()
    assert got_id == request_id
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("F01", NODE)
    good = await peer.send_prepare(make_prepare(harness.clock))
    assert (await peer.recv_reply())[0] == good


async def test_a_processor_that_raises_gives_t00_and_the_session_goes_on(
    harness: Harness,
) -> None:
    peer = await harness.connect_as()
    harness.processor.raises = RuntimeError("boom")
    await peer.send_prepare(make_prepare(harness.clock))
    _, reply = await peer.recv_reply()
    assert isinstance(reply, Reject)
    assert reply.code == "T00"
    harness.processor.raises = None
    harness.processor.rule = lambda prepare: "not a reply"  # type: ignore[assignment,return-value]
    await peer.send_prepare(make_prepare(harness.clock))
    _, reply = await peer.recv_reply()
    assert isinstance(reply, Reject)
    assert reply.code == "T00"
    harness.processor.rule = lambda prepare: Fulfill(FULFILLMENT, b"ok")
    await peer.send_prepare(make_prepare(harness.clock))
    assert isinstance((await peer.recv_reply())[1], Fulfill)
    assert [r["error"] for r in harness.log.events("packet_processor_failed")] == [
        "RuntimeError",
        "InvalidReply",
    ]


async def test_a_slow_packet_does_not_hold_up_the_next(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    slow = await peer.send_prepare(make_prepare(harness.clock, destination="test.slow"))
    await harness.until(lambda: harness.processor.started == 1, "slow packet started")
    harness.processor.hold = False
    fast = await peer.send_prepare(make_prepare(harness.clock, destination="test.fast"))
    assert (await peer.recv_reply())[0] == fast
    harness.processor.released.set()
    assert (await peer.recv_reply())[0] == slow


@pytest.mark.limits(max_in_flight=2)
async def test_beyond_the_in_flight_bound_prepares_get_t03(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    held = [await peer.send_prepare(make_prepare(harness.clock)) for _ in range(2)]
    await harness.until(lambda: harness.processor.started == 2, "two packets held")
    busy = await peer.send_prepare(make_prepare(harness.clock))
    got_id, reply = await peer.recv_reply()
    assert got_id == busy
    assert isinstance(reply, Reject)
    assert (reply.code, reply.triggered_by) == ("T03", NODE)
    assert harness.processor.started == 2
    harness.processor.released.set()
    answered = {(await peer.recv_reply())[0] for _ in held}
    assert answered == set(held)


async def test_a_prepare_still_unanswered_at_its_expiry_gets_r00(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    request_id = await peer.send_prepare(make_prepare(harness.clock, expires_in=10))
    await harness.until(lambda: harness.processor.started == 1, "packet held")
    harness.clock.advance(10)
    got_id, reply = await peer.recv_reply()
    assert got_id == request_id
    assert isinstance(reply, Reject)
    assert reply.code == "R00"


async def test_processor_rejects_are_relayed_unchanged(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.rule = reject_rule("F99")
    await peer.send_prepare(make_prepare(harness.clock))
    assert (await peer.recv_reply())[1] == Reject("F99", "test.bob", "nope")


# --- bad frames ---------------------------------------------------------------------------------


async def test_unreadable_frames_get_no_reply_and_three_in_a_row_close_1002(
    harness: Harness,
) -> None:
    peer = await harness.connect_as()
    await peer.send(b"\xff\x00")
    await peer.send("text is not BTP")
    await peer.send(b"\x06\x00\x00\x00\x01\x7f")
    assert await peer.closed() == (1002, "3 unreadable frames in a row")
    errors = harness.log.events("btp_error")
    assert [e["violations"] for e in errors] == [1, 2, 3]
    assert all(e["peerId"] == "alice" for e in errors)


async def test_a_readable_frame_between_violations_resets_the_count(harness: Harness) -> None:
    peer = await harness.connect_as()
    for _ in range(4):
        await peer.send(b"\xff")
        await peer.send(b"\xff")
        request_id = await peer.send_prepare(make_prepare(harness.clock))
        assert (await peer.recv_reply())[0] == request_id


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (frames.Message(41), b"no ilp"),
        (frames.Transfer(41, 100), b"TRANSFER"),
    ],
)
async def test_readable_requests_we_cannot_serve_get_a_btp_error(
    harness: Harness, frame: frames.Frame, text: bytes
) -> None:
    peer = await harness.connect_as()
    await peer.send_frame(frame)
    reply = await peer.recv_frame()
    assert isinstance(reply, frames.Error)
    assert reply.request_id == 41
    assert reply.code == "F00"
    assert text in reply.data


async def test_responses_for_unknown_request_ids_are_ignored(harness: Harness) -> None:
    peer = await harness.connect_as()
    await peer.send_frame(frames.Response(999))
    await peer.send_frame(frames.error_frame(998, "F00", "x", harness.clock.now()))
    request_id = await peer.send_prepare(make_prepare(harness.clock))
    assert (await peer.recv_reply())[0] == request_id  # nothing came before it


async def test_frames_above_the_maximum_size_close_1009(harness: Harness) -> None:
    peer = await harness.connect_as()
    await peer.send(b"\x06" + b"\x00" * MAX_FRAME)
    code, _ = await peer.closed()
    assert code == 1009


async def test_one_peers_failure_does_not_touch_another(harness: Harness) -> None:
    alice = await harness.connect_as("alice")
    bob = await harness.connect_as("bob")
    for _ in range(3):
        await alice.send(b"\xff")
    code, _ = await alice.closed()
    assert code == 1002
    request_id = await bob.send_prepare(make_prepare(harness.clock))
    assert (await bob.recv_reply())[0] == request_id


# --- capacity and shutdown ----------------------------------------------------------------------


@pytest.mark.limits(max_connections=1)
async def test_connections_beyond_the_limit_are_closed_1013(harness: Harness) -> None:
    await harness.connect_as("alice")
    extra = await harness.connect()
    assert await extra.closed() == (1013, "server at capacity")


@pytest.mark.limits(shutdown_timeout=3.0)
async def test_shutdown_lets_requests_finish_then_closes_normally(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    request_id = await peer.send_prepare(make_prepare(harness.clock))
    await harness.until(lambda: harness.processor.started == 1, "packet held")
    shutdown = asyncio.create_task(harness.server.shutdown())
    await harness.until(lambda: harness.server.draining, "draining")
    late = await peer.send_prepare(make_prepare(harness.clock))
    got_id, reply = await peer.recv_reply()
    assert (got_id, getattr(reply, "code", None)) == (late, "T03")
    harness.processor.released.set()
    got_id, reply = await peer.recv_reply()
    assert (got_id, reply) == (request_id, Fulfill(FULFILLMENT, b"ok"))
    assert await peer.closed() == (1000, "connector shutting down")
    async with asyncio.timeout(10):
        await shutdown
    (record,) = harness.log.events("btp_server_shutdown")
    assert record["activeConnections"] == 1


@pytest.mark.limits(shutdown_timeout=3.0)
async def test_shutdown_rejects_what_is_still_pending_at_the_deadline(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    request_id = await peer.send_prepare(make_prepare(harness.clock))
    await harness.until(lambda: harness.processor.started == 1, "packet held")
    shutdown = asyncio.create_task(harness.server.shutdown())
    await harness.until_clock_waited_on(2)  # the packet's expiry and the shutdown deadline
    harness.clock.advance(3.0)
    got_id, reply = await peer.recv_reply()
    assert got_id == request_id
    assert isinstance(reply, Reject)
    assert (reply.code, reply.message) == ("T03", "connector shutting down")
    assert await peer.closed() == (1000, "connector shutting down")
    async with asyncio.timeout(10):
        await shutdown


async def test_logs_never_contain_a_secret_or_presented_token(harness: Harness) -> None:
    await harness.connect_as("alice")
    bad = await harness.connect()
    await bad.authenticate("bob", "presented-token-XYZ")
    await bad.closed()
    text = repr(harness.log.records)
    for secret in (*SECRETS.values(), "presented-token-XYZ"):
        assert secret not in text
    assert all(r.get("event") for r in harness.log.records)


# --- bounded under attack -----------------------------------------------------------------------


async def test_before_auth_a_message_above_16_kib_closes_1009(harness: Harness) -> None:
    # Nothing big is read from a stranger: an auth MESSAGE is tiny.
    peer = await harness.connect()
    await peer.send(b"\x06" + b"\x00" * (17 * 1024))
    code, _ = await peer.closed()
    assert code == 1009


async def test_after_auth_the_full_frame_size_is_accepted(harness: Harness) -> None:
    peer = await harness.connect_as()
    prepare = make_prepare(harness.clock, data=b"x" * 30_000)  # about 30 KiB: above 16 KiB
    request_id = await peer.send_prepare(prepare)
    assert (await peer.recv_reply())[0] == request_id


async def test_prepares_in_flight_get_their_real_answers_before_a_1002_close(
    harness: Harness,
) -> None:
    """A next hop may still fulfill what it was sent: answering T03 at once would lose it."""
    peer = await harness.connect_as()
    harness.processor.hold = True
    request_id = await peer.send_prepare(make_prepare(harness.clock))
    await harness.until(lambda: harness.processor.started == 1, "packet held")
    for _ in range(3):
        await peer.send(b"\xff")
    await peer.send_prepare(make_prepare(harness.clock))  # taken no more, nor answered
    await harness.until(lambda: len(harness.log.events("btp_error")) == 3, "three violations")
    harness.processor.released.set()
    got_id, reply = await peer.recv_reply()  # exactly one answer, the real one, before the close
    assert got_id == request_id
    assert isinstance(reply, Fulfill)
    assert await peer.closed() == (1002, "3 unreadable frames in a row")


async def test_prepares_in_flight_are_answered_before_a_1009_close(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    request_id = await peer.send_prepare(make_prepare(harness.clock))
    await harness.until(lambda: harness.processor.started == 1, "packet held")
    await peer.send(b"\x06" + b"\x00" * MAX_FRAME)
    got_id, reply = await peer.recv_reply()
    assert got_id == request_id
    assert isinstance(reply, Reject)
    assert reply.code == "T03"
    code, _ = await peer.closed()
    assert code == 1009
    harness.processor.released.set()


async def test_repeated_in_flight_request_ids_reach_the_violation_limit(harness: Harness) -> None:
    peer = await harness.connect_as()
    harness.processor.hold = True
    prepare = make_prepare(harness.clock)
    await peer.send_frame(frames.ilp_message(77, codec.encode(prepare)))
    await harness.until(lambda: harness.processor.started == 1, "packet held")
    for _ in range(3):  # the same requestId while the first is in flight: never answered
        await peer.send_frame(frames.ilp_message(77, codec.encode(prepare)))
    await harness.until(lambda: len(harness.log.events("btp_error")) == 3, "three violations")
    harness.processor.released.set()
    got_id, reply = await peer.recv_reply()  # the one in flight is answered, once
    assert got_id == 77
    assert isinstance(reply, Fulfill)
    assert await peer.closed() == (1002, "3 unreadable frames in a row")
    assert harness.processor.started == 1
    harness.processor.released.set()
