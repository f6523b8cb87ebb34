"""A server session that refused a peer's auth must not accept that peer's Prepares."""

from __future__ import annotations

from connector.domain.btp import frames
from connector.domain.btp.events import PrepareReceived
from connector.domain.btp.session import BtpSession, Role
from connector.domain.ilp import codec
from tests.fakes import FakeClock, make_prepare


def test_a_prepare_after_a_refused_auth_is_not_accepted() -> None:
    clock = FakeClock()
    session = BtpSession(Role.SERVER, clock)
    session.receive_message(frames.encode(frames.auth_message(1, "alice", b"wrong")))
    session.events_received()
    session.reject_auth("invalid auth_token")
    session.events_received()
    session.messages_to_send()
    # The peer pipelined a Prepare behind its auth: it reaches us after the refusal.
    prepare = codec.encode(make_prepare(clock))
    session.receive_message(frames.encode(frames.ilp_message(2, prepare)))
    events = session.events_received()
    # A PrepareReceived here reaches BtpLink._prepare with no account (`assert self.account`).
    assert not [e for e in events if isinstance(e, PrepareReceived)], events
