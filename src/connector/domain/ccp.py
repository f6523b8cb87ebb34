"""CCP, the connector-to-connector route exchange, as ``ilp-protocol-ccp`` encodes it.

Two requests, each the data of an ILP Prepare of amount 0 with the peer-protocol condition
(``PEER_CONDITION``), answered by a Fulfill of ``PEER_FULFILLMENT`` or a Reject:

- ``peer.route.control``: the receiver tells the sender it wants updates (mode SYNC) or none
  (IDLE), and the last routing table id and epoch it knows;
- ``peer.route.update``: the sender's changes from one epoch to another (new routes, withdrawn
  prefixes), or a heartbeat with none.

OER throughout (RFC-0030): u8/u32 fixed, variable-length counts and octet strings. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from connector.domain.errors import IlpCodecError
from connector.domain.ildcp import PEER_CONDITION
from connector.domain.ilp.packets import Prepare
from connector.domain.oer import Reader, Writer

CONTROL_DESTINATION = "peer.route.control"
UPDATE_DESTINATION = "peer.route.update"
#: ilp-protocol-ccp's expiry for its requests.
REQUEST_LIFETIME = timedelta(seconds=60)
AUTH_SIZE = 32
TABLE_ID_SIZE = 16


class Mode(IntEnum):
    IDLE = 0
    SYNC = 1


@dataclass(frozen=True, slots=True)
class RouteControl:
    mode: Mode
    table_id: bytes  # 16 bytes (a UUID)
    last_known_epoch: int
    features: tuple[str, ...] = ()

    def encode(self) -> bytes:
        w = Writer()
        w.write_uint8(self.mode)
        w.write_bytes(_table_id(self.table_id))
        w.write_uint(self.last_known_epoch, 4)
        w.write_var_uint(len(self.features))
        for feature in self.features:
            w.write_var_octets(feature.encode("utf-8"))
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> RouteControl:
        r = Reader(data, IlpCodecError)
        raw_mode = r.read_uint8("mode")
        try:
            mode = Mode(raw_mode)
        except ValueError:
            raise IlpCodecError(f"mode {raw_mode} is neither IDLE (0) nor SYNC (1)") from None
        table_id = r.read_fixed(TABLE_ID_SIZE, "routing table id")
        epoch = r.read_uint(4, "last known epoch")
        features = tuple(
            _utf8(r.read_var_octets("feature"), "feature") for _ in range(_count(r, "features"))
        )
        _end(r)
        return cls(mode, table_id, epoch, features)


@dataclass(frozen=True, slots=True)
class RouteProp:
    id: int
    value: bytes
    optional: bool = True
    transitive: bool = True
    partial: bool = False
    utf8: bool = False

    @property
    def meta(self) -> int:
        # As ilp-protocol-ccp writes it: transitive only for optional props (a mandatory one is
        # always transitive), partial only for transitive ones.
        meta = 0
        if self.optional:
            meta |= 0x80
            if self.transitive:
                meta |= 0x40
                if self.partial:
                    meta |= 0x20
        else:
            meta |= 0x40
        if self.utf8:
            meta |= 0x10
        return meta


@dataclass(frozen=True, slots=True)
class CcpRoute:
    prefix: str
    path: tuple[str, ...]
    auth: bytes  # 32 bytes
    props: tuple[RouteProp, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    table_id: bytes
    current_epoch: int
    from_epoch: int
    to_epoch: int
    hold_down_time: int  # milliseconds
    speaker: str
    new_routes: tuple[CcpRoute, ...] = ()
    withdrawn: tuple[str, ...] = ()

    def encode(self) -> bytes:
        w = Writer()
        w.write_bytes(_table_id(self.table_id))
        w.write_uint(self.current_epoch, 4)
        w.write_uint(self.from_epoch, 4)
        w.write_uint(self.to_epoch, 4)
        w.write_uint(self.hold_down_time, 4)
        w.write_var_octets(self.speaker.encode("ascii"))
        w.write_var_uint(len(self.new_routes))
        for route in self.new_routes:
            w.write_var_octets(route.prefix.encode("ascii"))
            w.write_var_uint(len(route.path))
            for hop in route.path:
                w.write_var_octets(hop.encode("ascii"))
            if len(route.auth) != AUTH_SIZE:
                raise IlpCodecError(f"route auth must be {AUTH_SIZE} bytes ({route.prefix})")
            w.write_bytes(route.auth)
            w.write_var_uint(len(route.props))
            for prop in route.props:
                w.write_uint8(prop.meta)
                w.write_uint(prop.id, 2)
                w.write_var_octets(prop.value)
        w.write_var_uint(len(self.withdrawn))
        for prefix in self.withdrawn:
            w.write_var_octets(prefix.encode("ascii"))
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> RouteUpdate:
        r = Reader(data, IlpCodecError)
        table_id = r.read_fixed(TABLE_ID_SIZE, "routing table id")
        current = r.read_uint(4, "current epoch")
        start = r.read_uint(4, "from epoch")
        end = r.read_uint(4, "to epoch")
        hold_down = r.read_uint(4, "hold down time")
        speaker = r.read_var_ascii("speaker")
        routes = []
        for _ in range(_count(r, "new routes")):
            prefix = r.read_var_ascii("route prefix")
            path = tuple(r.read_var_ascii("path hop") for _ in range(_count(r, "path")))
            auth = r.read_fixed(AUTH_SIZE, "route auth")
            props = []
            for _ in range(_count(r, "route props")):
                meta = r.read_uint8("prop meta")
                prop_id = r.read_uint(2, "prop id")
                value = r.read_var_octets("prop value")
                props.append(
                    RouteProp(
                        prop_id,
                        value,
                        optional=bool(meta & 0x80),
                        transitive=bool(meta & 0x40),
                        partial=bool(meta & 0x20),
                        utf8=bool(meta & 0x10),
                    )
                )
            routes.append(CcpRoute(prefix, path, auth, tuple(props)))
        withdrawn = tuple(
            r.read_var_ascii("withdrawn prefix") for _ in range(_count(r, "withdrawn"))
        )
        _end(r)
        return cls(table_id, current, start, end, hold_down, speaker, tuple(routes), withdrawn)


def control_prepare(control: RouteControl, now: datetime) -> Prepare:
    return Prepare(0, now + REQUEST_LIFETIME, PEER_CONDITION, CONTROL_DESTINATION, control.encode())


def update_prepare(update: RouteUpdate, now: datetime) -> Prepare:
    return Prepare(0, now + REQUEST_LIFETIME, PEER_CONDITION, UPDATE_DESTINATION, update.encode())


def _table_id(value: bytes) -> bytes:
    if len(value) != TABLE_ID_SIZE:
        raise IlpCodecError(f"routing table id must be {TABLE_ID_SIZE} bytes")
    return value


def _count(r: Reader, what: str) -> int:
    count = r.read_var_uint(what)
    # Every item takes at least one byte: a count beyond what is left is a lie, refused before
    # anything is allocated for it.
    if count > r.remaining():
        raise IlpCodecError(f"{what}: count {count} exceeds the {r.remaining()} bytes left")
    return count


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise IlpCodecError(f"{what} is not UTF-8") from None


def _end(r: Reader) -> None:
    if r.remaining():
        raise IlpCodecError(f"{r.remaining()} bytes after the end of the message")
