"""ILPv4 packets (RFC-0027 §Specification): immutable values that are valid by construction.

A ``Prepare`` that exists has a uint64 amount, a 32-byte condition, a valid destination and at
most 32767 bytes of data; the constructors raise ``IlpCodecError`` otherwise, so the decoder and
application code share one set of checks.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

from connector.domain.errors import IlpCodecError
from connector.domain.ilp.address import is_valid_address
from connector.domain.oer import UINT64_MAX

#: RFC-0027: "data" is at most 32767 bytes in every packet type.
MAX_DATA_LENGTH = 32767


class PacketType(IntEnum):
    PREPARE = 12
    FULFILL = 13
    REJECT = 14


class IlpErrorCode(StrEnum):
    """The 21 error codes of RFC-0027 (ilp-packet's ``Errors.codes``); the letter is the class."""

    F00_BAD_REQUEST = "F00"
    F01_INVALID_PACKET = "F01"
    F02_UNREACHABLE = "F02"
    F03_INVALID_AMOUNT = "F03"
    F04_INSUFFICIENT_DESTINATION_AMOUNT = "F04"
    F05_WRONG_CONDITION = "F05"
    F06_UNEXPECTED_PAYMENT = "F06"
    F07_CANNOT_RECEIVE = "F07"
    F08_AMOUNT_TOO_LARGE = "F08"
    F99_APPLICATION_ERROR = "F99"
    T00_INTERNAL_ERROR = "T00"
    T01_PEER_UNREACHABLE = "T01"
    T02_PEER_BUSY = "T02"
    T03_CONNECTOR_BUSY = "T03"
    T04_INSUFFICIENT_LIQUIDITY = "T04"
    T05_RATE_LIMITED = "T05"
    T99_APPLICATION_ERROR = "T99"
    R00_TRANSFER_TIMED_OUT = "R00"
    R01_INSUFFICIENT_SOURCE_AMOUNT = "R01"
    R02_INSUFFICIENT_TIMEOUT = "R02"
    R99_APPLICATION_ERROR = "R99"


class ErrorClass(StrEnum):
    FINAL = "F"
    TEMPORARY = "T"
    RELATIVE = "R"


def _check_data(data: bytes) -> None:
    if not isinstance(data, bytes):
        raise IlpCodecError("data must be bytes")
    if len(data) > MAX_DATA_LENGTH:
        raise IlpCodecError(f"data is {len(data)} bytes, more than {MAX_DATA_LENGTH}")


@dataclass(frozen=True, slots=True)
class Prepare:
    """An ILP Prepare (type 12). ``expires_at`` is timezone-aware UTC, millisecond precision."""

    amount: int
    expires_at: datetime
    execution_condition: bytes
    destination: str
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or not 0 <= self.amount <= UINT64_MAX:
            raise IlpCodecError("amount must be an unsigned 64-bit integer")
        if not isinstance(self.expires_at, datetime) or self.expires_at.tzinfo is None:
            raise IlpCodecError("expiresAt must be a timezone-aware datetime")
        if not isinstance(self.execution_condition, bytes) or len(self.execution_condition) != 32:
            raise IlpCodecError("executionCondition must be 32 bytes")
        if not isinstance(self.destination, str) or not is_valid_address(self.destination):
            raise IlpCodecError("destination is not a valid ILP address")
        _check_data(self.data)

    def __repr__(self) -> str:
        return (
            f"Prepare(amount={self.amount}, expires_at={self.expires_at.isoformat()}, "
            f"destination={self.destination!r}, condition={self.execution_condition.hex()[:16]}…, "
            f"data={len(self.data)} bytes)"
        )


@dataclass(frozen=True, slots=True)
class Fulfill:
    """An ILP Fulfill (type 13): the preimage of the Prepare's condition and end-to-end data."""

    fulfillment: bytes
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.fulfillment, bytes) or len(self.fulfillment) != 32:
            raise IlpCodecError("fulfillment must be 32 bytes")
        _check_data(self.data)

    def __repr__(self) -> str:
        return f"Fulfill(fulfillment={self.fulfillment.hex()[:16]}…, data={len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class Reject:
    """An ILP Reject (type 14).

    ``code`` is any three ASCII characters: unknown codes are legal on the wire and are classified
    by their first letter (``error_class``). ``triggered_by`` is a valid address or ``""`` (the
    ASN.1 allows it and ilp-packet accepts it). ``message`` is decoded with ``surrogateescape`` so
    that a relayed Reject re-encodes to the same bytes even when its message is not valid UTF-8.
    """

    code: str
    triggered_by: str
    message: str = ""
    data: bytes = b""

    def __post_init__(self) -> None:
        code = self.code
        if not isinstance(code, str) or len(code) != 3 or not code.isascii():
            raise IlpCodecError("error code must be exactly 3 ASCII characters")
        if not isinstance(self.triggered_by, str) or (
            self.triggered_by and not is_valid_address(self.triggered_by)
        ):
            raise IlpCodecError("triggeredBy is not a valid ILP address")
        if not isinstance(self.message, str):
            raise IlpCodecError("message must be text")
        _check_data(self.data)

    @property
    def error_class(self) -> ErrorClass:
        """F, T or R; an unknown first letter counts as final (ILP.md §4)."""
        letter = self.code[0]
        if letter == "T":
            return ErrorClass.TEMPORARY
        if letter == "R":
            return ErrorClass.RELATIVE
        return ErrorClass.FINAL


Packet = Prepare | Fulfill | Reject

_new = object.__new__
# The slot descriptors' own setters: they bypass the frozen __setattr__ at half the cost of
# object.__setattr__, which looks the slot up by name each time.
_set_amount = vars(Prepare)["amount"].__set__
_set_expires_at = vars(Prepare)["expires_at"].__set__
_set_condition = vars(Prepare)["execution_condition"].__set__
_set_destination = vars(Prepare)["destination"].__set__
_set_data = vars(Prepare)["data"].__set__


def trusted_prepare(
    amount: int, expires_at: datetime, condition: bytes, destination: str, data: bytes
) -> Prepare:
    """Build a Prepare whose fields the decoder has already checked, skipping ``__post_init__``.

    Only the ILP codec calls this: it reads the amount from 8 bytes, the condition as 32 bytes and
    the expiry through the strict parser, and checks the destination and data length itself. It
    halves the cost of decoding, which is on every packet's path.
    """
    packet: Prepare = _new(Prepare)
    _set_amount(packet, amount)
    _set_expires_at(packet, expires_at)
    _set_condition(packet, condition)
    _set_destination(packet, destination)
    _set_data(packet, data)
    return packet


_set_fulfillment = vars(Fulfill)["fulfillment"].__set__
_set_fulfill_data = vars(Fulfill)["data"].__set__


def trusted_fulfill(fulfillment: bytes, data: bytes) -> Fulfill:
    """A Fulfill whose 32-byte fulfillment and short data the decoder has checked."""
    packet: Fulfill = _new(Fulfill)
    _set_fulfillment(packet, fulfillment)
    _set_fulfill_data(packet, data)
    return packet


Reply = Fulfill | Reject


def condition_of(fulfillment: bytes) -> bytes:
    """The execution condition a fulfillment satisfies: its SHA-256."""
    return hashlib.sha256(fulfillment).digest()


def fulfillment_matches(fulfillment: bytes, condition: bytes) -> bool:
    """Whether sha256(fulfillment) equals ``condition`` (the connector's F05 check)."""
    return hmac.compare_digest(hashlib.sha256(fulfillment).digest(), condition)


def amount_too_large_data(received: int, maximum: int) -> bytes:
    """F08 Reject data: receivedAmount and maximumAmount as two UInt64 (RFC-0027)."""
    return received.to_bytes(8, "big") + maximum.to_bytes(8, "big")
