"""ILPv4 wire format (RFC-0027, OER per RFC-0030): ``decode(bytes) -> Packet``, ``encode(Packet)``.

Every packet is ``type:UInt8`` then a length-prefixed envelope holding the type's fields. Choices
where ilp-packet 3.1.3 is lenient (the vectors' notes), each covered by a test:

- bytes after the envelope, and unread bytes inside it, are ignored (RFC-0030 requires this);
- expiresAt is parsed strictly: 17 digits, every field in range (no month 13, hour 24, spaces),
  while the epoch, which ilp-packet refuses, is accepted;
- non-ASCII bytes in addresses are rejected, not folded to ASCII;
- data over 32767 bytes is rejected (the RFC limit), in every packet type;
- a Reject's code is not checked against the known list, and its message may be any length and
  any bytes (it is debugging text that a connector relays unchanged).

Nothing but ``IlpCodecError`` escapes ``decode``.
"""

from __future__ import annotations

from datetime import datetime

from connector.domain.errors import IlpCodecError
from connector.domain.ilp.address import is_valid_address
from connector.domain.ilp.packets import (
    MAX_DATA_LENGTH,
    Fulfill,
    Packet,
    PacketType,
    Prepare,
    Reject,
    trusted_fulfill,
    trusted_prepare,
)
from connector.domain.oer import (
    UINT64_MAX,
    Reader,
    encode_length,
    format_interledger_timestamp,
    parse_interledger_timestamp,
    var_octets,
)

_PREPARE = PacketType.PREPARE.value
_FULFILL = PacketType.FULFILL.value
_REJECT = PacketType.REJECT.value


def decode(buf: bytes) -> Packet:
    """Decode one ILP packet of any type."""
    contents = _open_envelope(buf)
    kind = buf[0]
    if kind == _PREPARE:
        return _decode_prepare(contents)
    if kind == _FULFILL:
        return _decode_fulfill(contents)
    return _decode_reject(contents)


def decode_prepare(buf: bytes) -> Prepare:
    """Decode a packet that must be a Prepare (what a connector accepts as a request)."""
    if buf[:1] != b"\x0c":
        raise IlpCodecError(
            "not an ILP Prepare" if buf[:1] in (b"\x0d", b"\x0e") else "unknown ILP packet type"
        )
    # Short-form envelope (under 128 bytes) or the one- and two-byte long forms: the common cases,
    # read inline; anything else goes through the general reader.
    size = len(buf)
    first = buf[1] if size > 1 else 0x80
    if first < 0x80:
        start, end = 2, 2 + first
    elif (first == 0x81 and size > 2 and buf[2] >= 0x80) or (first == 0x82 and size > 3 and buf[2]):
        n = first - 0x80
        start, end = 2 + n, 2 + n + int.from_bytes(buf[2 : 2 + n], "big")
    else:
        return _decode_prepare(_open_envelope(buf))
    if end > size:
        raise IlpCodecError(f"truncated: envelope of {end - start} bytes, {size - start} left")
    return _decode_prepare(Reader(buf, IlpCodecError, start, end))


def decode_reply(buf: bytes) -> Fulfill | Reject:
    """Decode a packet that must be a Fulfill or a Reject (the answer to a Prepare)."""
    # The common case inline: a Fulfill in a short envelope with short data.
    size = len(buf)
    if size >= 35 and buf[0] == _FULFILL and buf[1] < 0x80 and buf[1] + 2 <= size:
        end = 2 + buf[1]
        if end >= 35 and buf[34] < 0x80 and 35 + buf[34] <= end:
            return trusted_fulfill(buf[2:34], buf[35 : 35 + buf[34]])
    packet = decode(buf)
    if isinstance(packet, Prepare):
        raise IlpCodecError("expected a Fulfill or Reject, got a Prepare")
    return packet


def _open_envelope(buf: bytes) -> Reader:
    if not buf:
        raise IlpCodecError("empty packet")
    if buf[0] not in (_PREPARE, _FULFILL, _REJECT):
        raise IlpCodecError(f"unknown ILP packet type {buf[0]}")
    reader = Reader(buf, IlpCodecError, 1)
    length = reader.read_length("envelope")
    end = reader.pos + length
    if end > len(buf):
        raise IlpCodecError(
            f"truncated: envelope declares {length} bytes, {len(buf) - reader.pos} left"
        )
    # Trailing bytes after the envelope are ignored (RFC-0030); reads stop at its end.
    reader.end = end
    return reader


def _decode_prepare(r: Reader) -> Prepare:
    buf = r.buf
    pos = r.pos
    if pos + 57 > r.end:
        raise IlpCodecError("truncated: Prepare needs 57 bytes before the destination")
    amount = int.from_bytes(buf[pos : pos + 8], "big")
    try:
        expires_at = parse_interledger_timestamp(buf[pos + 8 : pos + 25])
    except ValueError as exc:
        raise IlpCodecError(f"invalid expiresAt: {exc}") from None
    condition = buf[pos + 25 : pos + 57]
    pos += 57
    # Destinations are almost always under 128 bytes: read that short form inline.
    dest_end = pos + 1 + buf[pos] if pos < r.end and buf[pos] < 0x80 else 0
    if 0 < dest_end <= r.end:
        raw_destination = buf[pos + 1 : dest_end]
        r.pos = dest_end
    else:
        r.pos = pos
        raw_destination = r.read_var_octets("destination")
    destination = raw_destination.decode("ascii") if raw_destination.isascii() else ""
    if not is_valid_address(destination):
        raise IlpCodecError("destination is not a valid ILP address")
    data = r.read_var_octets("data")
    if len(data) > MAX_DATA_LENGTH:
        raise IlpCodecError(f"data is {len(data)} bytes, more than {MAX_DATA_LENGTH}")
    return trusted_prepare(amount, expires_at, condition, destination, data)


def _decode_fulfill(r: Reader) -> Fulfill:
    fulfillment = r.read_fixed(32, "fulfillment")
    data = r.read_var_octets("data")
    return Fulfill(fulfillment, data)


def _decode_reject(r: Reader) -> Reject:
    code = r.read_fixed(3, "code")
    if not code.isascii():
        raise IlpCodecError("error code is not ASCII")
    triggered_by = r.read_var_octets("triggeredBy")
    if not triggered_by.isascii():
        raise IlpCodecError("triggeredBy is not a valid ILP address")
    message = r.read_var_octets("message")
    data = r.read_var_octets("data")
    return Reject(
        code.decode("ascii"),
        triggered_by.decode("ascii"),
        message.decode("utf-8", "surrogateescape"),
        data,
    )


def encode(packet: Packet) -> bytes:
    """Encode a packet canonically. Packets are valid by construction, so this cannot fail on
    range (a uint64 above 2^64-1 never gets this far: ilp-packet would silently wrap it to 0)."""
    if isinstance(packet, Prepare):
        return encode_prepare(packet)
    if isinstance(packet, Fulfill):
        body = packet.fulfillment + var_octets(packet.data)
        return bytes((_FULFILL,)) + encode_length(len(body)) + body
    if isinstance(packet, Reject):
        body = (
            packet.code.encode("ascii")
            + var_octets(packet.triggered_by.encode("ascii"))
            + var_octets(packet.message.encode("utf-8", "surrogateescape"))
            + var_octets(packet.data)
        )
        return bytes((_REJECT,)) + encode_length(len(body)) + body
    raise TypeError(f"not an ILP packet: {type(packet).__name__}")


def encode_prepare(packet: Prepare) -> bytes:
    amount = packet.amount
    if not 0 <= amount <= UINT64_MAX:  # pragma: no cover - the constructor already refuses it
        raise IlpCodecError("amount must be an unsigned 64-bit integer")
    expiry = format_interledger_timestamp(packet.expires_at)
    destination = packet.destination.encode("ascii")
    data = packet.data
    body = b"".join(
        (
            amount.to_bytes(8, "big"),
            expiry,
            packet.execution_condition,
            encode_length(len(destination)),
            destination,
            encode_length(len(data)),
            data,
        )
    )
    return b"\x0c" + encode_length(len(body)) + body


def _length_at(buf: bytes, pos: int) -> tuple[int, int]:
    """``(start, length)`` of the length determinant at ``pos`` of a packet that decoded."""
    first = buf[pos]
    if first < 0x80:
        return pos + 1, first
    n = first & 0x7F
    return pos + 1 + n, int.from_bytes(buf[pos + 1 : pos + 1 + n], "big")


def patch_prepare(packet: bytes, amount: int, expires_at: datetime) -> bytes:
    """``packet``, a Prepare that ``decode_prepare`` accepted, with a new amount and expiry
    written in place: what a connector forwards, without decoding and re-encoding the rest.
    Byte for byte what ``encode_prepare`` gives for the same fields: bytes after the data, inside
    the envelope or after it, are dropped."""
    if not 0 <= amount <= UINT64_MAX:
        raise IlpCodecError("amount must be an unsigned 64-bit integer")
    start, length = _length_at(packet, 1)
    destination_start, destination_length = _length_at(packet, start + 57)
    data_start, data_length = _length_at(packet, destination_start + destination_length)
    data_end = data_start + data_length
    fields = (
        amount.to_bytes(8, "big"),
        format_interledger_timestamp(expires_at),
        packet[start + 25 : data_end],
    )
    if data_end == start + length:  # the envelope holds exactly the fields: keep its header
        return b"".join((packet[:start], *fields))
    body = b"".join(fields)
    return b"\x0c" + encode_length(len(body)) + body


def decode_reply_bytes(buf: bytes) -> tuple[Fulfill | Reject, bytes]:
    """A Fulfill or Reject and its canonical bytes (what ``encode`` gives): ``buf`` itself in the
    common case, so a connector relays the reply it checked without re-encoding it."""
    size = len(buf)
    if (
        size >= 35
        and buf[0] == _FULFILL
        and buf[1] + 2 == size
        and buf[1] < 0x80
        and buf[34] < 0x80
        and 35 + buf[34] == size
    ):
        return trusted_fulfill(buf[2:34], buf[35:]), buf
    reply = decode_reply(buf)
    return reply, encode(reply)
