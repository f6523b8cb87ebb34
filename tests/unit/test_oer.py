from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.domain import oer
from connector.domain.errors import CodecError


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "8180"),
        (255, "81ff"),
        (256, "820100"),
        (1000, "8203e8"),
        (70000, "83011170"),
    ],
)
def test_length_determinant_is_canonical(length: int, encoded: str) -> None:
    assert oer.encode_length(length).hex() == encoded
    assert oer.Reader(bytes.fromhex(encoded), CodecError).read_length("x") == length


@pytest.mark.parametrize("encoded", ["8105", "8200ff", "80", "8101", "87" + "01" * 7, "82"])
def test_non_canonical_or_truncated_lengths_are_refused(encoded: str) -> None:
    with pytest.raises(CodecError):
        oer.Reader(bytes.fromhex(encoded), CodecError).read_length("x")


@given(st.integers(0, 2**40))
def test_length_round_trip(length: int) -> None:
    assert oer.Reader(oer.encode_length(length), CodecError).read_length("x") == length


@given(st.integers(0, 2**64 - 1))
def test_var_uint_round_trip(value: int) -> None:
    w = oer.Writer()
    w.write_var_uint(value)
    assert oer.Reader(w.getvalue(), CodecError).read_var_uint("x") == value


def test_var_uint_refuses_zero_length_and_oversize() -> None:
    with pytest.raises(CodecError):
        oer.Reader(b"\x00", CodecError).read_var_uint("x")
    with pytest.raises(CodecError):
        oer.Reader(b"\x09" + bytes(9), CodecError).read_var_uint("x")


def test_reader_reports_truncation() -> None:
    r = oer.Reader(b"\x01", CodecError)
    with pytest.raises(CodecError, match="truncated"):
        r.read_uint(4, "x")
    with pytest.raises(CodecError, match="truncated"):
        r.read_fixed(2, "x")
    r.read_uint8("x")
    with pytest.raises(CodecError, match="truncated"):
        r.read_uint8("x")
    with pytest.raises(CodecError, match="IA5"):
        oer.Reader(b"\x01\xe9", CodecError).read_var_ascii("x")


@pytest.mark.parametrize(
    "raw",
    [
        b"2024131512345678",
        b"20241315123456789",
        b"20240115243456789",
        b"2024 115123456789",
        b"2024011512345678x",
        b"\xd9\xa0" * 8 + b"0",
    ],
)
def test_interledger_timestamp_is_strict(raw: bytes) -> None:
    with pytest.raises(ValueError):
        oer.parse_interledger_timestamp(raw)


def test_interledger_timestamp_round_trip_and_truncation() -> None:
    when = datetime(2024, 1, 15, 12, 34, 56, 789999, tzinfo=UTC)
    assert oer.format_interledger_timestamp(when) == b"20240115123456789"
    assert oer.parse_interledger_timestamp(b"20240115123456789") == when.replace(microsecond=789000)
    # Years below 1000 are zero-padded (ilp-packet writes 16 characters there).
    assert oer.format_interledger_timestamp(datetime(999, 6, 1, tzinfo=UTC)) == b"09990601000000000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20171224161432.279Z", datetime(2017, 12, 24, 16, 14, 32, 279000, tzinfo=UTC)),
        ("20171224161432Z", datetime(2017, 12, 24, 16, 14, 32, tzinfo=UTC)),
        ("20171224161432.2Z", datetime(2017, 12, 24, 16, 14, 32, 200000, tzinfo=UTC)),
        ("2017-12-24T16:14:32.279Z", datetime(2017, 12, 24, 16, 14, 32, 279000, tzinfo=UTC)),
        ("20171324161432.279Z", None),
        ("20171224161432.2794Z", None),
        ("2017-12-24T16:14:32", None),
        ("garbage", None),
        ("", None),
    ],
)
def test_generalized_time_is_read_leniently(text: str, expected: datetime | None) -> None:
    assert oer.parse_generalized_time(text) == expected


def test_generalized_time_written_as_btp_packet_does() -> None:
    assert (
        oer.format_generalized_time(datetime(2017, 12, 24, 16, 14, 32, tzinfo=UTC))
        == "20171224161432.000Z"
    )
