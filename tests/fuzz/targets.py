"""Fuzz targets: each takes arbitrary bytes and must either refuse them with the codec's own error
or accept them in a way that holds up (what decodes re-encodes, and decodes again to the same).
Any other exception is a bug. Used by atheris (``scripts/fuzz``, coverage-guided), by the CI run
of ``tests/fuzz/test_fuzz.py`` (the kept corpus, then a short budget), and by hypothesis where
atheris is not installed.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.domain.btp import frames
from connector.domain.btp.session import BtpSession, Role
from connector.domain.ccp import RouteControl, RouteUpdate
from connector.domain.errors import BtpCodecError, IlpCodecError
from connector.domain.ildcp import IldcpResponse
from connector.domain.ilp import codec
from tests.fakes import FakeClock


def btp_frame(data: bytes) -> None:
    try:
        frame = frames.decode(data)
    except BtpCodecError:
        return
    again = frames.decode(frames.encode(frame))
    assert again == frame, (frame, again)
    fast = frames.decode_ilp_fast(data)
    if fast is not None:  # the fast path agrees with the full decoder
        kind, request_id, packet = fast
        expected = frames.Message if kind == frames.FrameType.MESSAGE else frames.Response
        assert isinstance(frame, expected), (kind, frame)
        assert frame.request_id == request_id
        assert frames.ilp_entry(frame) == packet


def ilp_packet(data: bytes) -> None:
    try:
        packet = codec.decode(data)
    except IlpCodecError:
        return
    assert codec.decode(codec.encode(packet)) == packet


def ccp_control(data: bytes) -> None:
    try:
        control = RouteControl.decode(data)
    except IlpCodecError:
        return
    assert RouteControl.decode(control.encode()) == control


def ccp_update(data: bytes) -> None:
    try:
        update = RouteUpdate.decode(data)
    except IlpCodecError:
        return
    # As ilp-protocol-ccp, the encoder writes a prop's flags in their one canonical form (a
    # mandatory prop is transitive, only a transitive one is partial): from then on it is stable.
    encoded = update.encode()
    assert RouteUpdate.decode(encoded).encode() == encoded


def ildcp(data: bytes) -> None:
    try:
        response = IldcpResponse.decode(data)
    except (IlpCodecError, UnicodeEncodeError):
        return
    try:
        encoded = response.encode()
    except (UnicodeEncodeError, ValueError, OverflowError):
        return  # decodes leniently (bytes after the end); nothing we would send
    assert IldcpResponse.decode(encoded) == response


def session(data: bytes) -> None:
    """An authenticated server session fed ``data`` cut into messages (a length byte each): it
    must never raise, whatever it is sent."""
    s = BtpSession(Role.SERVER, FakeClock(), max_violations=3)
    s.receive_message(frames.encode(frames.auth_message(1, "alice", b"secret")))
    s.events_received()
    s.accept_auth("alice")
    s.messages_to_send()
    pos = 0
    while pos < len(data) and s.state.name != "CLOSED":
        size = data[pos]
        message = data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        s.receive_message(message)
        s.events_received()
        s.messages_to_send()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "btp_frame": btp_frame,
    "ilp_packet": ilp_packet,
    "ccp_control": ccp_control,
    "ccp_update": ccp_update,
    "ildcp": ildcp,
    "session": session,
}
