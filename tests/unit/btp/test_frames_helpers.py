"""The helpers the server uses: auth reading, ILP entries, ERROR building, the fast ILP path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connector.domain.btp import frames
from connector.domain.btp.frames import FrameType, Message, ProtocolDataEntry, Response
from connector.domain.errors import BtpCodecError
from tests.vectors import cases


def _vector(name: str) -> bytes:
    return bytes.fromhex(
        next(c.values[0]["hex"] for c in cases("btp.json", "valid") if c.values[0]["name"] == name)
    )


def test_reads_the_ilp_plugin_btp_auth_message() -> None:
    auth = frames.read_auth(frames.decode(_vector("auth_message_ilp_plugin_btp")))
    assert (auth.request_id, auth.username, auth.token) == (0x5F3759DF, "alice", b"s3cr3t")
    assert "s3cr3t" not in repr(auth)


def test_auth_message_round_trips_to_the_vector() -> None:
    assert frames.encode(frames.auth_message(0x5F3759DF, "alice", b"s3cr3t")) == _vector(
        "auth_message_ilp_plugin_btp"
    )


def test_token_only_auth_has_empty_username() -> None:
    auth = frames.read_auth(frames.decode(_vector("auth_message_token_only")))
    assert auth.username == ""


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (Response(1), "auth MESSAGE"),
        (Message(1), "must be auth"),
        (Message(1, (ProtocolDataEntry("auth", 0, b""),)), "auth_token"),
        (
            Message(
                1,
                (
                    ProtocolDataEntry("auth", 0, b""),
                    ProtocolDataEntry("auth_username", 1, b"\xff"),
                    ProtocolDataEntry("auth_token", 1, b"t"),
                ),
            ),
            "UTF-8",
        ),
    ],
)
def test_bad_auth_messages_are_refused_with_a_reason(frame: frames.Frame, reason: str) -> None:
    with pytest.raises(BtpCodecError, match=reason):
        frames.read_auth(frame)


def test_auth_error_matches_the_vector() -> None:
    error = frames.error_frame(
        0x5F3759DF,
        "F00",
        "invalid auth_token",
        datetime(2024, 1, 15, 12, 34, 57, 123000, tzinfo=UTC),
    )
    assert frames.encode(error) == _vector("auth_error_invalid_token")


def test_ilp_helpers_match_the_vectors() -> None:
    message = frames.decode(_vector("message_ilp_prepare_short"))
    packet = frames.ilp_entry(message)
    assert packet is not None
    assert frames.encode(frames.ilp_message(message.request_id, packet)) == _vector(
        "message_ilp_prepare_short"
    )
    fast = frames.encode_ilp_frame(FrameType.MESSAGE, message.request_id, packet)
    assert fast == _vector("message_ilp_prepare_short")
    response = frames.decode(_vector("response_ilp_fulfill"))
    reply = frames.ilp_entry(response)
    assert reply is not None
    assert frames.encode(frames.ilp_response(response.request_id, reply)) == _vector(
        "response_ilp_fulfill"
    )
    assert frames.encode_ilp_frame(FrameType.RESPONSE, response.request_id, reply) == _vector(
        "response_ilp_fulfill"
    )


def test_ilp_entry_is_none_without_one() -> None:
    assert frames.ilp_entry(Message(1)) is None
    assert Message(1).primary is None


def test_fast_path_refuses_bad_request_id() -> None:
    with pytest.raises(BtpCodecError):
        frames.encode_ilp_frame(FrameType.MESSAGE, -1, b"")


def test_reprs_never_show_entry_data() -> None:
    message = frames.auth_message(1, "alice", b"hunter2")
    assert "hunter2" not in repr(message)
    assert "hunter2" not in str(message)


def test_a_frame_with_too_many_protocol_data_entries_is_refused_unread() -> None:
    # 87,000 empty entries fit in 256 KiB and took ~95 ms to decode: the count is capped.
    count = frames.MAX_PROTOCOL_DATA_ENTRIES + 1
    body = bytes((2,)) + count.to_bytes(2, "big") + b"\x00\x00\x00" * count
    raw = b"\x06" + (7).to_bytes(4, "big") + b"\x82" + len(body).to_bytes(2, "big") + body
    with pytest.raises(BtpCodecError, match="protocolData entries"):
        frames.decode(raw)
    at_limit = frames.MAX_PROTOCOL_DATA_ENTRIES
    body = bytes((2,)) + at_limit.to_bytes(2, "big") + b"\x00\x00\x00" * at_limit
    raw = b"\x06" + (7).to_bytes(4, "big") + b"\x82" + len(body).to_bytes(2, "big") + body
    assert len(frames.decode(raw).protocol_data) == at_limit
