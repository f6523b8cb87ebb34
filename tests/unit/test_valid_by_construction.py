"""Packets and frames cannot exist invalid: every constructor check, one case each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.domain.btp.frames import Error, Message, ProtocolDataEntry, Response, Transfer
from connector.domain.errors import BtpCodecError, IlpCodecError
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Fulfill, Prepare, Reject, amount_too_large_data

WHEN = datetime(2030, 1, 1, tzinfo=UTC)
COND = bytes(32)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Prepare(1.5, WHEN, COND, "g.a"),  # type: ignore[arg-type]
        lambda: Prepare(1, datetime(2030, 1, 1), COND, "g.a"),  # naive datetime
        lambda: Prepare(1, "2030", COND, "g.a"),  # type: ignore[arg-type]
        lambda: Prepare(1, WHEN, bytes(31), "g.a"),
        lambda: Prepare(1, WHEN, COND, b"g.a"),  # type: ignore[arg-type]
        lambda: Prepare(1, WHEN, COND, "g.a", "text"),  # type: ignore[arg-type]
        lambda: Fulfill(bytes(33)),
        lambda: Fulfill(bytes(32), b"x" * 32768),
        lambda: Reject("F0", "g.a"),
        lambda: Reject("F0\u00e9", "g.a"),
        lambda: Reject("F00", "not an address"),
        lambda: Reject("F00", "g.a", b"bytes"),  # type: ignore[arg-type]
    ],
)
def test_invalid_ilp_values_cannot_be_built(build: Any) -> None:
    with pytest.raises(IlpCodecError):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: ProtocolDataEntry("ilp", 256, b""),
        lambda: ProtocolDataEntry("ilp", 0, "text"),  # type: ignore[arg-type]
        lambda: Message(-1),
        lambda: Message(1, [ProtocolDataEntry("a", 0, b"")]),  # type: ignore[arg-type]
        lambda: Response(1, ("a",)),  # type: ignore[arg-type]
        lambda: Transfer(1, -1),
        lambda: Error(1, "F00", "N\u00e4me", None),
        lambda: Error(1, "F00", "Name", None, "text"),  # type: ignore[arg-type]
    ],
)
def test_invalid_btp_values_cannot_be_built(build: Any) -> None:
    with pytest.raises(BtpCodecError):
        build()


def test_encoders_refuse_foreign_objects() -> None:
    with pytest.raises(TypeError):
        codec.encode("packet")  # type: ignore[arg-type]
    from connector.domain.btp import frames

    with pytest.raises(TypeError):
        frames.encode("frame")  # type: ignore[arg-type]


def test_f08_data_is_two_uint64() -> None:
    assert amount_too_large_data(1000, 100).hex() == "00000000000003e80000000000000064"


def test_long_destination_and_long_envelope_decode() -> None:
    prepare = Prepare(1, WHEN, COND, "g." + "a" * 1000, b"d" * 300)
    assert codec.decode_prepare(codec.encode(prepare)) == prepare
    big = Prepare(1, WHEN, COND, "g.a", b"d" * 32767)
    assert codec.decode_prepare(codec.encode(big)) == big


def test_prepare_repr_is_short() -> None:
    text = repr(Prepare(1, WHEN, COND, "g.a", b"x" * 1000))
    assert "1000 bytes" in text
    assert len(text) < 200
    assert "bytes" in repr(Fulfill(bytes(32), b"abc"))
