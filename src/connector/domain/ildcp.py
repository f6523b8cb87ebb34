"""IL-DCP (RFC-0031): a child asks ``peer.config`` for its ILP address and asset details."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from connector.domain.errors import IlpCodecError
from connector.domain.oer import Reader, Writer

DESTINATION = "peer.config"
#: The peer-protocol fulfillment (32 zero bytes) and its condition, for every ``peer.*`` request.
PEER_FULFILLMENT = bytes(32)
PEER_CONDITION = hashlib.sha256(PEER_FULFILLMENT).digest()


@dataclass(frozen=True, slots=True)
class IldcpResponse:
    client_address: str
    asset_scale: int
    asset_code: str

    def encode(self) -> bytes:
        """Fulfill data: clientAddress (var ASCII), assetScale (UInt8), assetCode (var UTF-8)."""
        w = Writer()
        w.write_var_octets(self.client_address.encode("ascii"))
        w.write_uint8(self.asset_scale)
        w.write_var_octets(self.asset_code.encode("utf-8"))
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> IldcpResponse:
        r = Reader(data, IlpCodecError)
        address = r.read_var_ascii("clientAddress")
        scale = r.read_uint8("assetScale")
        try:
            code = r.read_var_octets("assetCode").decode("utf-8")
        except UnicodeDecodeError:
            raise IlpCodecError("assetCode is not UTF-8") from None
        return cls(address, scale, code)
