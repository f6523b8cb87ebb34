"""Every ILP vector in shared/protocol/vectors/ilp.json, and our choices where ilp-packet is lax."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.domain.errors import IlpCodecError
from connector.domain.ilp import codec
from connector.domain.ilp.packets import (
    Fulfill,
    Prepare,
    Reject,
    condition_of,
    fulfillment_matches,
)
from tests.vectors import cases


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_matches_decoded(packet: Any, expected: dict[str, Any]) -> None:
    fields = expected["data"]
    if expected["type"] == 12:
        assert isinstance(packet, Prepare)
        assert packet.amount == int(fields["amount"])
        assert packet.expires_at == _iso(fields["expiresAt"])
        assert packet.execution_condition.hex() == fields["executionCondition"]
        assert packet.destination == fields["destination"]
        assert packet.data.hex() == fields["data"]
    elif expected["type"] == 13:
        assert isinstance(packet, Fulfill)
        assert packet.fulfillment.hex() == fields["fulfillment"]
        assert packet.data.hex() == fields["data"]
    else:
        assert isinstance(packet, Reject)
        assert packet.code == fields["code"]
        assert packet.triggered_by == fields["triggeredBy"]
        assert packet.message == fields["message"]
        assert packet.data.hex() == fields["data"]


@pytest.mark.parametrize("vector", cases("ilp.json", "valid"))
def test_valid_vector_decodes_to_recorded_fields_and_reencodes_byte_for_byte(
    vector: dict[str, Any],
) -> None:
    raw = bytes.fromhex(vector["hex"])
    packet = codec.decode(raw)
    assert_matches_decoded(packet, vector["decoded"])
    assert codec.encode(packet) == raw


@pytest.mark.parametrize(
    "vector", [c for c in cases("ilp.json", "valid") if "expiresAt_wire" in c.values[0]]
)
def test_prepare_vectors_keep_the_wire_expiry(vector: dict[str, Any]) -> None:
    packet = codec.decode_prepare(bytes.fromhex(vector["hex"]))
    raw = bytes.fromhex(vector["hex"])
    assert vector["expiresAt_wire"].encode() in raw
    assert codec.encode(packet) == raw


# Our verdict on each invalid vector: True = we reject it, False = we accept it (and why).
ACCEPTED_INVALID = {
    # RFC-0030: decoders MUST ignore trailing bytes; ilp-packet does too.
    "trailing_bytes_after_envelope",
    "trailing_bytes_inside_envelope",
    # The epoch is a valid date that ilp-packet wrongly refuses; it is simply expired.
    "expires_at_unix_epoch",
    # Unknown codes are legal on the wire; they are classified by first letter.
    "reject_non_standard_code",
    # A Reject message is debugging text we relay unchanged: any bytes, any length.
    "reject_message_invalid_utf8",
    "reject_message_8192_bytes",
}


@pytest.mark.parametrize("vector", cases("ilp.json", "invalid"))
def test_invalid_vector_follows_our_documented_choice(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    if vector["name"] in ACCEPTED_INVALID:
        packet = codec.decode(raw)
        if vector["name"] == "reject_message_invalid_utf8":
            # Lossless: the same bytes go back out when the Reject is relayed.
            assert codec.encode(packet) in raw
        return
    with pytest.raises(IlpCodecError):
        codec.decode(raw)


def test_epoch_expiry_decodes_as_1970() -> None:
    vector = next(
        v for v in cases("ilp.json", "invalid") if v.values[0]["name"] == "expires_at_unix_epoch"
    )
    packet = codec.decode_prepare(bytes.fromhex(vector.values[0]["hex"]))
    assert packet.expires_at == datetime(1970, 1, 1, tzinfo=UTC)


def test_unknown_reject_code_is_final_by_first_letter() -> None:
    assert Reject("zz!", "g.x").error_class == "F"
    assert Reject("T42", "g.x").error_class == "T"
    assert Reject("R07", "g.x").error_class == "R"


@pytest.mark.parametrize("pair", cases("ilp.json", "condition_pairs"))
def test_condition_pairs(pair: dict[str, Any]) -> None:
    fulfillment = bytes.fromhex(pair["fulfillment"])
    condition = bytes.fromhex(pair["condition"])
    assert condition_of(fulfillment) == condition
    assert fulfillment_matches(fulfillment, condition)
    assert not fulfillment_matches(fulfillment, bytes(32))


def test_serializer_quirks_raise_where_ilp_packet_wraps_or_corrupts() -> None:
    when = datetime(2024, 1, 15, 12, 34, 56, 789000, tzinfo=UTC)
    cond = bytes(32)
    with pytest.raises(IlpCodecError):
        Prepare(2**64, when, cond, "g.bob")
    with pytest.raises(IlpCodecError):
        Prepare(-1, when, cond, "g.bob")
    # ilp-packet writes year 999 as 16 characters (a corrupt packet); we zero-pad to 17.
    old = codec.decode_prepare(
        codec.encode(Prepare(1, datetime(999, 6, 1, tzinfo=UTC), cond, "g.bob"))
    )
    assert old.expires_at.year == 999
    with pytest.raises(IlpCodecError):
        Prepare(1, when, cond, "bogus")
    with pytest.raises(IlpCodecError):
        Prepare(1, when, cond, "g.bob", b"x" * 32768)


def test_decode_prepare_refuses_other_packet_types() -> None:
    fulfill = codec.encode(Fulfill(bytes(32)))
    with pytest.raises(IlpCodecError, match="not an ILP Prepare"):
        codec.decode_prepare(fulfill)
    with pytest.raises(IlpCodecError):
        codec.decode_prepare(b"")
    prepare = codec.encode(Prepare(1, datetime(2030, 1, 1, tzinfo=UTC), bytes(32), "g.bob"))
    with pytest.raises(IlpCodecError):
        codec.decode_reply(prepare)
    assert isinstance(codec.decode_reply(fulfill), Fulfill)
