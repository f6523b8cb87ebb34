"""BTP 2.0 frames (RFC-0023 §Specification, as btp-packet 2.2.1 encodes them).

A frame is ``type:UInt8, requestId:UInt32, LENGTH, contents`` and is exactly one binary WebSocket
message. Only RESPONSE (1), ERROR (2), MESSAGE (6) and TRANSFER (7) exist in BTP 2.0; 3-5 are the
legacy BTP 1.0 types that btp-packet refuses, and so do we.

Choices where btp-packet is lenient, each covered by a test:

- bytes after the envelope, and unread bytes inside it, are ignored (RFC-0030);
- a protocol name with a non-ASCII byte is rejected (btp-packet folds ``0xe9`` to ``"i"``);
- a non-minimal protocolData count (``02 00 00``) is accepted, as btp-packet does;
- an ERROR's triggeredAt is read leniently and never fails a frame (``None`` when unreadable).

``decode`` raises only ``BtpCodecError``. When the header and envelope are intact and the frame
is a request, the error carries ``request_id`` and ``btp_error_code`` so the caller may answer it;
anything less must get no reply (RFC-0023 §Flow: replying to garbage loops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from connector.domain.errors import BtpCodecError
from connector.domain.oer import (
    UINT32_MAX,
    UINT64_MAX,
    Reader,
    Writer,
    encode_length,
    format_generalized_time,
    parse_generalized_time,
)


class FrameType(IntEnum):
    RESPONSE = 1
    ERROR = 2
    MESSAGE = 6
    TRANSFER = 7


class ContentType(IntEnum):
    """The registered content types; any other byte value passes through as octets."""

    OCTET_STREAM = 0
    TEXT_PLAIN_UTF8 = 1
    APPLICATION_JSON = 2


class BtpErrorCode:
    """BTP ERROR codes (RFC-0023 §Error codes) with the names ilp-plugin-btp gives them.

    Not ILP codes, though some look alike: there is no F02 here.
    """

    NAMES = {
        "T00": "UnreachableError",
        "F00": "NotAcceptedError",
        "F01": "InvalidFieldsError",
        "F03": "TransferNotFoundError",
        "F04": "InvalidFulfillmentError",
        "F05": "DuplicateIdError",
        "F06": "AlreadyRolledBackError",
        "F07": "AlreadyFulfilledError",
        "F08": "InsufficientBalanceError",
    }


#: Names we produce; a frame from a peer may carry any ASCII name.
ILP = "ilp"
AUTH = "auth"
AUTH_USERNAME = "auth_username"
AUTH_TOKEN = "auth_token"  # noqa: S105 - a protocol entry name, not a secret


@dataclass(frozen=True, slots=True)
class ProtocolDataEntry:
    """One sub-protocol entry. The first entry of a frame is its primary sub-protocol."""

    name: str
    content_type: int
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isascii():
            raise BtpCodecError("protocol name must be ASCII")
        if not isinstance(self.content_type, int) or not 0 <= self.content_type <= 255:
            raise BtpCodecError("content type must fit in one byte")
        if not isinstance(self.data, bytes):
            raise BtpCodecError("protocol data must be bytes")

    def __repr__(self) -> str:
        # Entries can carry auth tokens: show sizes, never contents.
        return f"ProtocolDataEntry({self.name!r}, {self.content_type}, {len(self.data)} bytes)"


ProtocolData = tuple[ProtocolDataEntry, ...]


def _check_request_id(request_id: int) -> None:
    if not isinstance(request_id, int) or not 0 <= request_id <= UINT32_MAX:
        raise BtpCodecError("requestId must be an unsigned 32-bit integer")


def _check_entries(entries: ProtocolData) -> None:
    if not isinstance(entries, tuple) or not all(isinstance(e, ProtocolDataEntry) for e in entries):
        raise BtpCodecError("protocolData must be a tuple of ProtocolDataEntry")


class _Base:
    __slots__ = ()
    request_id: int
    protocol_data: ProtocolData

    def entry(self, name: str) -> ProtocolDataEntry | None:
        """The first entry called ``name``, if any."""
        for e in self.protocol_data:
            if e.name == name:
                return e
        return None

    @property
    def primary(self) -> str | None:
        """The primary sub-protocol: the name of the first entry (RFC-0023 §Protocol data)."""
        return self.protocol_data[0].name if self.protocol_data else None


@dataclass(frozen=True, slots=True, repr=False)
class Message(_Base):
    """MESSAGE (6): a request carrying sub-protocol data, e.g. an ILP Prepare in ``ilp``."""

    request_id: int
    protocol_data: ProtocolData = ()

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_entries(self.protocol_data)

    def __repr__(self) -> str:
        return f"Message(request_id={self.request_id}, protocol_data={self.protocol_data!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Response(_Base):
    """RESPONSE (1): the successful answer to a MESSAGE or TRANSFER with the same requestId."""

    request_id: int
    protocol_data: ProtocolData = ()

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_entries(self.protocol_data)

    def __repr__(self) -> str:
        return f"Response(request_id={self.request_id}, protocol_data={self.protocol_data!r})"


@dataclass(frozen=True, slots=True, repr=False)
class Transfer(_Base):
    """TRANSFER (7): a settlement request with a uint64 amount."""

    request_id: int
    amount: int
    protocol_data: ProtocolData = ()

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        if not isinstance(self.amount, int) or not 0 <= self.amount <= UINT64_MAX:
            raise BtpCodecError("amount must be an unsigned 64-bit integer")
        _check_entries(self.protocol_data)

    def __repr__(self) -> str:
        return (
            f"Transfer(request_id={self.request_id}, amount={self.amount}, "
            f"protocol_data={self.protocol_data!r})"
        )


@dataclass(frozen=True, slots=True)
class Error(_Base):
    """ERROR (2): a request that could not be processed at all (not an ILP Reject).

    ``triggered_at`` is ``None`` when the peer sent one we cannot read; it is written in the
    ``YYYYMMDDHHMMSS.mmmZ`` form btp-packet reads.
    """

    request_id: int
    code: str
    name: str
    triggered_at: datetime | None
    data: bytes = b""
    protocol_data: ProtocolData = field(default=())

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        if not isinstance(self.code, str) or len(self.code) != 3 or not self.code.isascii():
            raise BtpCodecError("error code must be exactly 3 ASCII characters")
        if not isinstance(self.name, str) or not self.name.isascii():
            raise BtpCodecError("error name must be ASCII")
        if not isinstance(self.data, bytes):
            raise BtpCodecError("error data must be bytes")
        _check_entries(self.protocol_data)


Frame = Message | Response | Transfer | Error

_REQUEST_TYPES = (FrameType.MESSAGE, FrameType.TRANSFER)
_KNOWN_TYPES = frozenset(int(t) for t in FrameType)


# --- decoding -----------------------------------------------------------------------------------


def decode(buf: bytes) -> Frame:
    """Decode one BTP frame. See the module docstring for what raises and what is answerable."""
    r = Reader(buf, BtpCodecError)
    if not buf:
        raise BtpCodecError("empty frame")
    kind = r.read_uint8("type")
    request_id = r.read_uint(4, "requestId")
    length = r.read_length("envelope")
    end = r.pos + length
    if end > len(buf):
        raise BtpCodecError(f"truncated: envelope declares {length} bytes, {len(buf) - r.pos} left")
    # From here the header is intact: a broken request may be answered with an ERROR.
    answerable = kind not in (FrameType.RESPONSE, FrameType.ERROR)
    if kind not in _KNOWN_TYPES:
        raise BtpCodecError(
            f"unsupported BTP frame type {kind}",
            request_id=request_id,
            btp_error_code="F00",
        )
    body = Reader(buf, BtpCodecError, r.pos, end)
    try:
        return _decode_body(kind, request_id, body)
    except BtpCodecError as exc:
        if answerable:
            raise BtpCodecError(str(exc), request_id=request_id, btp_error_code="F01") from None
        raise


def _decode_body(kind: int, request_id: int, r: Reader) -> Frame:
    if kind == FrameType.MESSAGE:
        return Message(request_id, _read_protocol_data(r))
    if kind == FrameType.RESPONSE:
        return Response(request_id, _read_protocol_data(r))
    if kind == FrameType.TRANSFER:
        amount = r.read_uint(8, "amount")
        return Transfer(request_id, amount, _read_protocol_data(r))
    code = r.read_fixed(3, "code")
    if not code.isascii():
        raise BtpCodecError("error code is not ASCII")
    name = r.read_var_ascii("error name")
    triggered_at = r.read_var_octets("triggeredAt")
    data = r.read_var_octets("error data")
    protocol_data = _read_protocol_data(r)
    when = parse_generalized_time(triggered_at.decode("ascii")) if triggered_at.isascii() else None
    return Error(request_id, code.decode("ascii"), name, when, data, protocol_data)


#: At most this many protocol-data entries per frame. ilp-plugin-btp sends one to four and
#: btp-packet's vectors go to 256; a 256 KiB frame of 87,000 empty entries would otherwise cost
#: ~100 ms to decode.
MAX_PROTOCOL_DATA_ENTRIES = 1024


def _read_protocol_data(r: Reader) -> ProtocolData:
    count = r.read_var_uint("protocolData count")
    if count > MAX_PROTOCOL_DATA_ENTRIES:
        raise BtpCodecError(f"{count} protocolData entries: more than {MAX_PROTOCOL_DATA_ENTRIES}")
    # Each entry takes at least 3 bytes: refuse a count the buffer cannot hold before allocating.
    if count * 3 > r.remaining():
        raise BtpCodecError(f"truncated: {count} protocolData entries cannot fit")
    entries = []
    for _ in range(count):
        name = r.read_var_ascii("protocol name")
        content_type = r.read_uint8("content type")
        data = r.read_var_octets("protocol data")
        entries.append(ProtocolDataEntry(name, content_type, data))
    return tuple(entries)


# --- encoding -----------------------------------------------------------------------------------


def encode(frame: Frame) -> bytes:
    """Encode a frame canonically (values are valid by construction)."""
    body = Writer()
    if isinstance(frame, Message):
        kind = FrameType.MESSAGE
    elif isinstance(frame, Response):
        kind = FrameType.RESPONSE
    elif isinstance(frame, Transfer):
        kind = FrameType.TRANSFER
        body.write_uint(frame.amount, 8)
    elif isinstance(frame, Error):
        kind = FrameType.ERROR
        body.write_bytes(frame.code.encode("ascii"))
        body.write_var_octets(frame.name.encode("ascii"))
        stamp = format_generalized_time(frame.triggered_at) if frame.triggered_at else ""
        body.write_var_octets(stamp.encode("ascii"))
        body.write_var_octets(frame.data)
    else:
        raise TypeError(f"not a BTP frame: {type(frame).__name__}")
    _write_protocol_data(body, frame.protocol_data)
    out = Writer()
    out.write_uint8(kind)
    out.write_uint(frame.request_id, 4)
    out.write_var_octets(body.buf)
    return bytes(out.buf)


def _write_protocol_data(w: Writer, entries: ProtocolData) -> None:
    w.write_var_uint(len(entries))
    for e in entries:
        w.write_var_octets(e.name.encode("ascii"))
        w.write_uint8(e.content_type)
        w.write_var_octets(e.data)


# --- helpers for what a server needs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The credentials of an auth MESSAGE. ``token`` is bytes and never shown by ``repr``."""

    request_id: int
    username: str
    token: bytes = field(repr=False)


def read_auth(frame: Frame) -> AuthRequest:
    """Read an auth MESSAGE (RFC-0023 §Authentication, as ilp-plugin-btp sends it).

    Checks what ilp-plugin-btp and mini-accounts check, and nothing more: a MESSAGE whose first
    entry is ``auth`` and which has an ``auth_token`` entry. ``auth_username`` is optional on the
    wire (absent from the RFC text); it reads as ``""`` when missing. Content types are not checked.
    Raises ``BtpCodecError`` with a reason that never includes the token.
    """
    if not isinstance(frame, Message):
        raise BtpCodecError("first frame must be an auth MESSAGE")
    if frame.primary != AUTH:
        raise BtpCodecError("first protocol data entry must be auth")
    token = frame.entry(AUTH_TOKEN)
    if token is None:
        raise BtpCodecError("auth_token entry is required")
    username_entry = frame.entry(AUTH_USERNAME)
    username = b"" if username_entry is None else username_entry.data
    try:
        name = username.decode("utf-8")
    except UnicodeDecodeError:
        raise BtpCodecError("auth_username is not UTF-8") from None
    return AuthRequest(frame.request_id, name, token.data)


def auth_message(request_id: int, username: str, token: bytes) -> Message:
    """The auth MESSAGE a client sends first: ``auth``, ``auth_username``, ``auth_token``."""
    return Message(
        request_id,
        (
            ProtocolDataEntry(AUTH, ContentType.OCTET_STREAM, b""),
            ProtocolDataEntry(AUTH_USERNAME, ContentType.TEXT_PLAIN_UTF8, username.encode()),
            ProtocolDataEntry(AUTH_TOKEN, ContentType.TEXT_PLAIN_UTF8, token),
        ),
    )


def ilp_entry(frame: Frame) -> bytes | None:
    """The ILP packet in the first ``ilp`` entry, or ``None`` when there is none."""
    e = frame.entry(ILP)
    return None if e is None else e.data


def ilp_message(request_id: int, packet: bytes) -> Message:
    """A MESSAGE carrying one ILP packet (RFC-0023 §ILP over BTP)."""
    return Message(request_id, (ProtocolDataEntry(ILP, ContentType.OCTET_STREAM, packet),))


def ilp_response(request_id: int, packet: bytes) -> Response:
    """A RESPONSE carrying the ILP Fulfill or Reject for the request ``request_id``."""
    return Response(request_id, (ProtocolDataEntry(ILP, ContentType.OCTET_STREAM, packet),))


def error_frame(
    request_id: int, code: str, reason: str, triggered_at: datetime, name: str | None = None
) -> Error:
    """A BTP ERROR with ``reason`` as plain UTF-8 data, as ilp-plugin-btp writes it."""
    return Error(
        request_id,
        code,
        name or BtpErrorCode.NAMES.get(code, "NotAcceptedError"),
        triggered_at,
        reason.encode("utf-8"),
    )


# Fast paths for the per-packet hot path: a MESSAGE or RESPONSE whose only entry is ``ilp``.
_ILP_ENTRY_HEAD = b"\x01\x01\x03ilp\x00"


def encode_ilp_frame(kind: FrameType, request_id: int, packet: bytes) -> bytes:
    """Bytes of ``encode(ilp_message(...))`` / ``encode(ilp_response(...))`` without the objects."""
    if not 0 <= request_id <= UINT32_MAX:
        raise BtpCodecError("requestId must be an unsigned 32-bit integer")
    size = len(packet)
    size_prefix = _LENGTHS[size] if size < 0x100 else encode_length(size)
    inner = 7 + len(size_prefix) + size
    return b"".join(
        (
            bytes((kind,)),
            request_id.to_bytes(4, "big"),
            _LENGTHS[inner] if inner < 0x100 else encode_length(inner),
            _ILP_ENTRY_HEAD,
            size_prefix,
            packet,
        )
    )


#: Length determinants of 0-255, precomputed for the per-packet path.
_LENGTHS = tuple(encode_length(n) for n in range(256))


def _length_at(buf: bytes, pos: int) -> tuple[int, int]:
    """``(start, length)`` of a canonical length determinant at ``pos`` in its one-, two- and
    three-byte forms; ``(-1, 0)`` for anything else (the general decoder then decides)."""
    first = buf[pos]
    if first < 0x80:
        return pos + 1, first
    if first == 0x81 and buf[pos + 1] >= 0x80:
        return pos + 2, buf[pos + 1]
    if first == 0x82 and buf[pos + 1]:
        return pos + 3, (buf[pos + 1] << 8) | buf[pos + 2]
    return -1, 0


def decode_ilp_fast(buf: bytes) -> tuple[int, int, bytes] | None:
    """``(type, requestId, packet)`` of a MESSAGE or RESPONSE whose only protocol-data entry is
    ``ilp`` (octet-stream): what every packet looks like. ``None`` for anything else, which
    ``decode`` then reads; where this answers, ``decode`` would give the same frame."""
    size = len(buf)
    if size < 17 or (buf[0] != 6 and buf[0] != 1):
        return None
    try:
        start, length = _length_at(buf, 5)
        end = start + length
        if start < 0 or end > size or end < start + 8 or buf[start : start + 7] != _ILP_ENTRY_HEAD:
            return None
        packet_start, packet_length = _length_at(buf, start + 7)
    except IndexError:
        return None
    packet_end = packet_start + packet_length
    if packet_start < 0 or packet_end > end:
        return None
    return buf[0], int.from_bytes(buf[1:5], "big"), buf[packet_start:packet_end]
