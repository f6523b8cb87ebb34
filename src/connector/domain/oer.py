"""The Octet Encoding Rules primitives that ILPv4 and BTP 2.0 are built from (RFC-0030).

``Reader`` walks a buffer and raises the error class it was given, so a decoder lets nothing but
its own codec error escape. ``Writer`` appends to a ``bytearray``. Both enforce the canonical forms:
a length determinant uses the short form for 0-127 and the shortest long form above that.
"""

from __future__ import annotations

from datetime import UTC, datetime

from connector.domain.errors import CodecError

UINT32_MAX = 0xFFFF_FFFF
UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFF

#: Longest length determinant we read: 0x80|6 covers 2^48 bytes, as oer-utils does; anything a
#: connector sees is far below it, and frame size is bounded by the transport before decoding.
_MAX_LENGTH_OCTETS = 6


class Reader:
    """Reads OER fields from ``buf`` starting at ``pos``; errors are raised as ``error``."""

    __slots__ = ("buf", "end", "error", "pos")

    def __init__(
        self, buf: bytes, error: type[CodecError], pos: int = 0, end: int | None = None
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end
        self.error = error

    def remaining(self) -> int:
        return self.end - self.pos

    def read_uint8(self, what: str) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self.error(f"truncated: {what} missing")
        self.pos = pos + 1
        return self.buf[pos]

    def read_uint(self, size: int, what: str) -> int:
        end = self.pos + size
        if end > self.end:
            raise self.error(f"truncated: {what} needs {size} bytes, {self.remaining()} left")
        value = int.from_bytes(self.buf[self.pos : end], "big")
        self.pos = end
        return value

    def read_fixed(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > self.end:
            raise self.error(f"truncated: {what} needs {size} bytes, {self.remaining()} left")
        value = self.buf[self.pos : end]
        self.pos = end
        return value

    def read_length(self, what: str) -> int:
        """Read a canonical length determinant (RFC-0030 §Variable-Length Octet Strings)."""
        buf = self.buf
        pos = self.pos
        if pos >= self.end:
            raise self.error(f"truncated: length of {what} missing")
        first = buf[pos]
        if first < 0x80:
            self.pos = pos + 1
            return first
        n = first & 0x7F
        if n == 0:
            raise self.error(f"length of {what}: long form with no length bytes (0x80)")
        if n > _MAX_LENGTH_OCTETS:
            raise self.error(f"length of {what}: {n} length bytes is more than supported")
        end = pos + 1 + n
        if end > self.end:
            raise self.error(f"truncated: length of {what} needs {n} more bytes")
        length = int.from_bytes(buf[pos + 1 : end], "big")
        # Canonical: long form only from 128 up, and with no leading zero byte.
        if length < 0x80 or buf[pos + 1] == 0:
            raise self.error(f"length of {what}: {length} is not canonically encoded in {n} bytes")
        self.pos = end
        return length

    def read_var_octets(self, what: str) -> bytes:
        length = self.read_length(what)
        end = self.pos + length
        if end > self.end:
            raise self.error(f"truncated: {what} declares {length} bytes, {self.remaining()} left")
        value = self.buf[self.pos : end]
        self.pos = end
        return value

    def read_var_ascii(self, what: str) -> str:
        raw = self.read_var_octets(what)
        if not raw.isascii():
            raise self.error(f"{what} is not IA5 (ASCII) text")
        return raw.decode("ascii")

    def read_var_uint(self, what: str) -> int:
        """Read an OER variable-length unsigned integer: one length byte, then the value."""
        size = self.read_uint8(f"length of {what}")
        if size == 0:
            raise self.error(f"{what}: variable-length integer with zero length")
        if size > 8:
            raise self.error(f"{what}: {size}-byte integer is too large")
        return self.read_uint(size, what)


class Writer:
    """Appends canonical OER fields to a ``bytearray``."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def write_uint8(self, value: int) -> None:
        self.buf.append(value)

    def write_uint(self, value: int, size: int) -> None:
        self.buf += value.to_bytes(size, "big")

    def write_bytes(self, value: bytes | bytearray) -> None:
        self.buf += value

    def write_length(self, length: int) -> None:
        self.buf += encode_length(length)

    def write_var_octets(self, value: bytes | bytearray) -> None:
        self.buf += encode_length(len(value))
        self.buf += value

    def write_var_uint(self, value: int) -> None:
        size = max(1, (value.bit_length() + 7) // 8)
        self.buf.append(size)
        self.buf += value.to_bytes(size, "big")


def encode_length(length: int) -> bytes:
    """The canonical length determinant for ``length`` (short form below 128)."""
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def var_octets(value: bytes) -> bytes:
    """``value`` with its canonical length determinant in front."""
    return encode_length(len(value)) + value


# --- timestamps ---------------------------------------------------------------------------------


def format_interledger_timestamp(when: datetime) -> bytes:
    """The 17-digit ``YYYYMMDDHHmmSSfff`` UTC form of RFC-0027 ``expiresAt`` (no prefix, no dot).

    Sub-millisecond precision is truncated, as ilp-packet works in whole milliseconds. Years are
    always four digits (ilp-packet writes year 999 as 16 characters, a corrupt packet).
    """
    u = when.astimezone(UTC) if when.tzinfo is not None and when.tzinfo is not UTC else when
    key = (u.year, u.month, u.day, u.hour, u.minute, u.second)
    prefix = _SECONDS.get(key)
    if prefix is None:
        # Most expiries of one moment share their second: format it once.
        if len(_SECONDS) >= 256:
            _SECONDS.clear()
        prefix = _SECONDS[key] = "{:04d}{:02d}{:02d}{:02d}{:02d}{:02d}".format(*key).encode("ascii")
    return prefix + _MILLIS[u.microsecond // 1000]


_SECONDS: dict[tuple[int, ...], bytes] = {}
_MILLIS = tuple(f"{n:03d}".encode("ascii") for n in range(1000))


def parse_interledger_timestamp(raw: bytes) -> datetime:
    """Parse the 17-digit ``expiresAt`` strictly (RFC-0030): digits only, every field in range.

    ilp-packet rolls month 13 and hour 24 over and tolerates spaces; we reject all of them, and
    accept the epoch, which ilp-packet wrongly refuses.
    """
    # bytes.isdigit() is true only for ASCII 0-9, so int() below cannot see a sign or a space.
    if len(raw) != 17 or not raw.isdigit():
        raise ValueError("expiresAt must be exactly 17 ASCII digits")
    # One int() and a divmod chain: about half the cost of seven slices (the per-packet path).
    n, millis = divmod(int(raw), 1000)
    n, second = divmod(n, 100)
    n, minute = divmod(n, 100)
    n, hour = divmod(n, 100)
    n, day = divmod(n, 100)
    year, month = divmod(n, 100)
    return datetime(year, month, day, hour, minute, second, millis * 1000, UTC)


def format_generalized_time(when: datetime) -> str:
    """``YYYYMMDDHHMMSS.mmmZ`` in UTC: the form btp-packet writes and can read back."""
    u = when.astimezone(UTC) if when.tzinfo is not None else when
    return (
        f"{u.year:04d}{u.month:02d}{u.day:02d}{u.hour:02d}{u.minute:02d}{u.second:02d}"
        f".{u.microsecond // 1000:03d}Z"
    )


def parse_generalized_time(text: str) -> datetime | None:
    """Read a BTP ``triggeredAt`` leniently: every RFC-0030 form, or ``None`` when unreadable.

    Accepts ``YYYYMMDDHHMMSS`` with an optional 1-3 digit fraction and a final ``Z``, plus the
    ISO-8601 form btp-packet's Date fallback accepts. Nobody acts on triggeredAt, so an
    unreadable one never fails a frame (BTP.md §4).
    """
    if len(text) >= 15 and text.endswith("Z") and text[:14].isdigit() and text.isascii():
        fraction = text[14:-1]
        if fraction and not (
            fraction.startswith(".") and 2 <= len(fraction) <= 4 and fraction[1:].isdigit()
        ):
            return None
        millis = int(fraction[1:].ljust(3, "0")) if fraction else 0
        try:
            return datetime(
                int(text[0:4]),
                int(text[4:6]),
                int(text[6:8]),
                int(text[8:10]),
                int(text[10:12]),
                int(text[12:14]),
                millis * 1000,
                tzinfo=UTC,
            )
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)
