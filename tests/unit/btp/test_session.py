"""BtpSession: a client and a server session joined by a fake wire (h11's ConnectionPair)."""

from __future__ import annotations

from typing import Any

import pytest

from connector.domain.btp import frames
from connector.domain.btp.events import (
    Authenticated,
    AuthRequested,
    CloseRequested,
    Event,
    FrameRejected,
    InvalidPrepareReceived,
    PrepareReceived,
    ReplyReceived,
    RequestFailed,
    RequestIgnored,
    ResponseIgnored,
)
from connector.domain.btp.session import BtpSession, Role, State
from connector.domain.errors import InvalidState
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Reject
from connector.domain.secret import Secret
from tests.fakes import FULFILLMENT, FakeClock, make_prepare

TOKEN = Secret(b"s3cr3t")


class SessionPair:
    """Two real sessions; ``deliver`` moves whatever one side wrote to the other."""

    def __init__(self, max_violations: int = 3) -> None:
        self.clock = FakeClock()
        self.client = BtpSession(Role.CLIENT, self.clock, first_request_id=1)
        self.server = BtpSession(
            Role.SERVER, self.clock, max_violations=max_violations, first_request_id=1000
        )

    def deliver(self, sender: BtpSession) -> list[Event]:
        receiver = self.server if sender is self.client else self.client
        for data in sender.messages_to_send():
            receiver.receive_message(data)
        return receiver.events_received()

    def open(self) -> None:
        self.client.send_auth("alice", TOKEN)
        (event,) = self.deliver(self.client)
        assert isinstance(event, AuthRequested)
        self.server.accept_auth("alice")
        assert self.deliver(self.server) == [Authenticated()]


def server_gets(session: BtpSession, data: bytes | str) -> tuple[list[Event], list[bytes]]:
    session.receive_message(data)
    return session.events_received(), session.messages_to_send()


def assert_frame_sent(sent: list[bytes], kind: type, **fields: Any) -> frames.Frame:
    assert len(sent) == 1, sent
    frame = frames.decode(sent[0])
    assert isinstance(frame, kind)
    for name, value in fields.items():
        assert getattr(frame, name) == value, name
    return frame


def assert_nothing_sent(session: BtpSession) -> None:
    assert session.messages_to_send() == []


def assert_session_failing(events: list[Event], code: int) -> None:
    assert isinstance(events[-1], CloseRequested)
    assert events[-1].code == code


# --- handshake ----------------------------------------------------------------------------------


def test_handshake_opens_both_sides_and_reveals_no_token() -> None:
    pair = SessionPair()
    pair.client.send_auth("alice", TOKEN)
    (event,) = pair.deliver(pair.client)
    assert isinstance(event, AuthRequested)
    assert event.username == "alice"
    assert event.token == TOKEN
    assert "s3cr3t" not in repr(event)
    assert pair.server.auth_pending
    pair.server.accept_auth("alice")
    assert pair.deliver(pair.server) == [Authenticated()]
    assert pair.server.state is pair.client.state is State.OPEN
    assert pair.server.peer_id == "alice"
    assert not pair.server.auth_pending


def test_rejected_auth_sends_f00_error_and_closes_with_policy_violation() -> None:
    pair = SessionPair()
    request_id = pair.client.send_auth("alice", TOKEN)
    pair.deliver(pair.client)
    pair.server.reject_auth("invalid auth_token")
    sent = pair.server.messages_to_send()
    error = assert_frame_sent(sent, frames.Error, request_id=request_id, code="F00")
    assert isinstance(error, frames.Error)
    assert error.data == b"invalid auth_token"
    assert_session_failing(pair.server.events_received(), 1008)
    assert pair.server.state is State.CLOSING
    pair.client.receive_message(sent[0])
    events = pair.client.events_received()
    assert events[0] == RequestFailed(request_id, "F00", "invalid auth_token")
    assert_session_failing(events, 1008)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (frames.ilp_message(5, b"x"), "must be auth"),
        (frames.Message(5, (frames.ProtocolDataEntry("auth", 0, b""),)), "auth_token"),
        (frames.Transfer(5, 10), "auth MESSAGE"),
    ],
)
def test_any_other_first_request_gets_an_error_on_its_request_id(
    frame: frames.Frame, reason: str
) -> None:
    server = BtpSession(Role.SERVER, FakeClock())
    events, sent = server_gets(server, frames.encode(frame))
    error = assert_frame_sent(sent, frames.Error, request_id=5, code="F00")
    assert isinstance(error, frames.Error)
    assert reason in error.data.decode()
    assert_session_failing(events, 1008)


def test_unreadable_first_frame_closes_without_reply() -> None:
    server = BtpSession(Role.SERVER, FakeClock())
    events, sent = server_gets(server, b"\x06\x00")
    assert sent == []
    assert isinstance(events[0], FrameRejected)
    assert not events[0].answered
    assert_session_failing(events, 1002)
    assert server.state is State.ERROR


def test_response_as_first_frame_is_never_answered() -> None:
    server = BtpSession(Role.SERVER, FakeClock())
    events, sent = server_gets(server, frames.encode(frames.Response(9)))
    assert sent == []
    assert_session_failing(events, 1008)


def test_answerable_garbage_before_auth_is_refused_on_its_request_id() -> None:
    server = BtpSession(Role.SERVER, FakeClock())
    events, sent = server_gets(server, bytes.fromhex("0300000007020100"))
    assert_frame_sent(sent, frames.Error, request_id=7, code="F00")
    assert_session_failing(events, 1008)


def test_client_ignores_garbage_before_auth_reply_by_closing() -> None:
    pair = SessionPair()
    pair.client.send_auth("alice", TOKEN)
    pair.client.messages_to_send()
    pair.client.receive_message(frames.encode(frames.ilp_message(3, b"")))
    assert_session_failing(pair.client.events_received(), 1002)


def test_auth_commands_are_checked_against_state_and_role() -> None:
    pair = SessionPair()
    with pytest.raises(InvalidState):
        pair.server.accept_auth("alice")  # no auth request yet
    with pytest.raises(InvalidState):
        pair.client.reject_auth("x")
    with pytest.raises(InvalidState):
        pair.server.send_auth("alice", TOKEN)
    pair.open()
    with pytest.raises(InvalidState, match="OPEN"):
        pair.client.send_auth("alice", TOKEN)


def test_frames_before_the_auth_decision_close_the_session() -> None:
    pair = SessionPair()
    pair.client.send_auth("alice", TOKEN)
    pair.deliver(pair.client)
    pair.server.receive_message(frames.encode(frames.ilp_message(2, b"")))
    assert_session_failing(pair.server.events_received(), 1002)


# --- packets ------------------------------------------------------------------------------------


def test_prepare_round_trip_between_sessions() -> None:
    pair = SessionPair()
    pair.open()
    prepare = make_prepare(pair.clock)
    request_id = pair.client.send_prepare(prepare)
    assert pair.client.pending_request_ids == {request_id}
    (event,) = pair.deliver(pair.client)
    assert event == PrepareReceived(request_id, prepare)
    assert pair.server.incoming_request_ids == {request_id}
    pair.server.send_result(request_id, Fulfill(FULFILLMENT, b"ok"))
    assert pair.server.incoming_in_flight == 0
    assert pair.deliver(pair.server) == [ReplyReceived(request_id, Fulfill(FULFILLMENT, b"ok"))]
    assert pair.client.pending_request_ids == frozenset()


def test_replies_may_be_raw_ilp_bytes() -> None:
    pair = SessionPair()
    pair.open()
    request_id = pair.client.send_prepare(codec.encode(make_prepare(pair.clock)))
    pair.deliver(pair.client)
    reject = Reject("F02", "test.connector", "no route")
    pair.server.send_result(request_id, codec.encode(reject))
    assert pair.deliver(pair.server) == [ReplyReceived(request_id, reject)]


def test_many_requests_in_flight_answered_in_any_order() -> None:
    pair = SessionPair()
    pair.open()
    ids = [pair.client.send_prepare(make_prepare(pair.clock)) for _ in range(50)]
    assert len(set(ids)) == 50
    pair.deliver(pair.client)
    for request_id in reversed(ids):
        pair.server.send_result(request_id, Reject("F02", "test.c"))
    events = pair.deliver(pair.server)
    assert sorted(e.request_id for e in events if isinstance(e, ReplyReceived)) == sorted(ids)


def test_invalid_prepare_is_reported_for_an_f01_reject() -> None:
    pair = SessionPair()
    pair.open()
    fulfill = codec.encode(Fulfill(FULFILLMENT))
    events, _ = server_gets(pair.server, frames.encode(frames.ilp_message(77, fulfill)))
    (event,) = events
    assert isinstance(event, InvalidPrepareReceived)
    assert event.request_id == 77
    assert 77 in pair.server.incoming_request_ids  # it still needs exactly one answer


def test_message_without_ilp_gets_a_btp_error() -> None:
    pair = SessionPair()
    pair.open()
    events, sent = server_gets(pair.server, frames.encode(frames.Message(8)))
    error = assert_frame_sent(sent, frames.Error, request_id=8, code="F00")
    assert isinstance(error, frames.Error)
    assert b"no ilp" in error.data
    assert isinstance(events[0], FrameRejected)
    assert events[0].answered
    assert pair.server.state is State.OPEN


def test_transfer_gets_a_btp_error() -> None:
    pair = SessionPair()
    pair.open()
    _, sent = server_gets(pair.server, frames.encode(frames.Transfer(9, 100)))
    assert_frame_sent(sent, frames.Error, request_id=9, code="F00")


def test_unknown_type_with_intact_header_gets_a_btp_error() -> None:
    pair = SessionPair()
    pair.open()
    _, sent = server_gets(pair.server, bytes.fromhex("0800000001020100"))
    assert_frame_sent(sent, frames.Error, request_id=1, code="F00")


def test_unknown_response_is_ignored_silently() -> None:
    pair = SessionPair()
    pair.open()
    events, sent = server_gets(pair.server, frames.encode(frames.Response(4242)))
    assert events == [ResponseIgnored(4242)]
    assert sent == []
    error = frames.error_frame(4243, "F00", "x", pair.clock.now())
    events, sent = server_gets(pair.server, frames.encode(error))
    assert events == [ResponseIgnored(4243)]
    assert sent == []


def test_duplicate_request_id_in_flight_is_not_answered() -> None:
    pair = SessionPair()
    pair.open()
    raw = frames.encode(frames.ilp_message(5, codec.encode(make_prepare(pair.clock))))
    server_gets(pair.server, raw)
    events, sent = server_gets(pair.server, raw)
    assert sent == []
    assert isinstance(events[0], FrameRejected)
    assert not events[0].answered


def test_error_reply_and_bad_reply_fail_the_request() -> None:
    pair = SessionPair()
    pair.open()
    first = pair.client.send_prepare(make_prepare(pair.clock))
    second = pair.client.send_prepare(make_prepare(pair.clock))
    third = pair.client.send_prepare(make_prepare(pair.clock))
    pair.client.messages_to_send()
    pair.client.receive_message(
        frames.encode(frames.error_frame(first, "T00", "busy", pair.clock.now()))
    )
    pair.client.receive_message(frames.encode(frames.Response(second)))
    pair.client.receive_message(frames.encode(frames.ilp_response(third, b"\x0c\x00")))
    events = pair.client.events_received()
    assert events[0] == RequestFailed(first, "T00", "busy")
    assert isinstance(events[1], RequestFailed)
    assert events[1].code == "F01"
    assert isinstance(events[2], RequestFailed)
    assert pair.client.pending_request_ids == frozenset()


# --- violations ---------------------------------------------------------------------------------


def test_consecutive_unreadable_frames_close_with_1002() -> None:
    pair = SessionPair(max_violations=3)
    pair.open()
    for count in (1, 2):
        events, sent = server_gets(pair.server, b"\xff")
        assert sent == []
        assert events == [FrameRejected(events[0].reason, None, None, False, count)]  # type: ignore[union-attr]
    events, sent = server_gets(pair.server, "text frame")
    assert sent == []
    assert "text frame" in events[0].reason  # type: ignore[union-attr]
    assert_session_failing(events, 1002)
    assert pair.server.state is State.ERROR
    # Failed: a new request is neither taken nor answered (the close is on its way) ...
    assert server_gets(pair.server, frames.encode(frames.Message(1))) == (
        [RequestIgnored(1)],
        [],
    )
    # ... more garbage asks for no second close ...
    events, _ = server_gets(pair.server, b"\xff")
    assert not any(isinstance(e, CloseRequested) for e in events)


def test_a_failed_session_still_reads_the_answers_to_its_own_requests() -> None:
    """So that the adapter can wait for them before it closes: a next hop's Fulfill is value."""
    pair = SessionPair(max_violations=1)
    pair.open()
    request_id = pair.server.send_prepare(codec.encode(make_prepare()))
    pair.server.messages_to_send()
    server_gets(pair.server, b"\xff")
    assert pair.server.state is State.ERROR
    answer = frames.ilp_response(request_id, codec.encode(Fulfill(bytes(32), b"")))
    events, _ = server_gets(pair.server, frames.encode(answer))
    assert [type(e) for e in events] == [ReplyReceived]


def test_a_readable_frame_resets_the_violation_count() -> None:
    pair = SessionPair(max_violations=2)
    pair.open()
    server_gets(pair.server, b"\xff")
    assert pair.server.violations == 1
    server_gets(pair.server, frames.encode(frames.Response(1)))
    assert pair.server.violations == 0
    events, _ = server_gets(pair.server, b"\xff")
    assert not any(isinstance(e, CloseRequested) for e in events)


# --- closing ------------------------------------------------------------------------------------


def test_close_drains_the_peers_requests_but_sends_no_new_ones() -> None:
    pair = SessionPair()
    pair.open()
    request_id = pair.client.send_prepare(make_prepare(pair.clock))
    pair.deliver(pair.client)
    pair.server.close(1000, "bye")
    assert pair.server.events_received() == [CloseRequested(1000, "bye")]
    with pytest.raises(InvalidState, match="CLOSING"):
        pair.server.send_prepare(make_prepare(pair.clock))
    pair.server.send_result(request_id, Reject("T03", "test.c"))
    assert len(pair.server.messages_to_send()) == 1
    pair.server.close()  # idempotent
    assert pair.server.events_received() == []


def test_connection_lost_fails_our_pending_requests() -> None:
    pair = SessionPair()
    pair.open()
    request_id = pair.client.send_prepare(make_prepare(pair.clock))
    pair.client.connection_lost()
    assert pair.client.events_received() == [RequestFailed(request_id, "T01", "connection lost")]
    assert pair.client.state is State.CLOSED
    pair.client.connection_lost()
    assert pair.client.events_received() == []
    with pytest.raises(InvalidState):
        pair.client.send_result(1, Reject("T00", ""))


def test_send_result_for_an_unknown_request_is_a_local_error() -> None:
    pair = SessionPair()
    pair.open()
    with pytest.raises(InvalidState, match="no request 5"):
        pair.server.send_result(5, Reject("T00", ""))


def test_forgotten_request_ignores_a_late_reply() -> None:
    pair = SessionPair()
    pair.open()
    request_id = pair.client.send_prepare(make_prepare(pair.clock))
    pair.deliver(pair.client)
    pair.client.forget_request(request_id)
    pair.server.send_result(request_id, Reject("R00", "test.c"))
    assert pair.deliver(pair.server) == [ResponseIgnored(request_id)]


def test_request_ids_wrap_and_skip_ids_in_flight() -> None:
    clock = FakeClock()
    client = BtpSession(Role.CLIENT, clock, first_request_id=2**32 - 1)
    client.send_auth("a", TOKEN)
    auth = frames.decode(client.messages_to_send()[0])
    client.receive_message(frames.encode(frames.Response(auth.request_id)))
    first = client.send_prepare(make_prepare(clock))
    assert auth.request_id == 2**32 - 1
    assert first == 0


def test_max_violations_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_violations"):
        BtpSession(Role.SERVER, FakeClock(), max_violations=0)
