"""Every exception the connector raises on purpose, split by who is to blame.

::

    ConnectorError
    ├── CodecError                 bytes that do not decode, or values that cannot be encoded
    │   ├── IlpCodecError          ilp_error_code = "F01" (RFC-0027: Invalid Packet)
    │   └── BtpCodecError          request_id / btp_error_code set when the frame can be answered
    ├── InvalidState               a session command that its current state does not allow (a bug)
    ├── TransportError             raised by adapters, declared here so the core can catch them
    │   └── PeerDisconnected       a connection closed, with its close code and reason
    └── ConfigurationError         bad settings found at start-up

A Reject is a value, never an exception: processors *return* ``Reject``. Exceptions are for bugs and
protocol violations; the pipeline runner turns an unexpected one into a ``T00`` Reject.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error raised on purpose by the connector."""


class CodecError(ConnectorError, ValueError):
    """Bytes that cannot be decoded, or a value that cannot be encoded."""


class IlpCodecError(CodecError):
    """An ILP packet (RFC-0027) is malformed or a field is out of range."""

    #: The ILP error code to reject with when this packet arrived as a request.
    ilp_error_code = "F01"


class BtpCodecError(CodecError):
    """A BTP frame (RFC-0023) cannot be decoded.

    ``request_id`` is set only when the frame was readable enough to be answered: its header and
    envelope are intact and it is not a response. RFC-0023 forbids replying to anything less, since
    two peers answering each other's garbage loop forever. ``btp_error_code`` is then the code of
    the BTP ERROR to send back.
    """

    def __init__(
        self,
        message: str,
        *,
        request_id: int | None = None,
        btp_error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.btp_error_code = btp_error_code

    @property
    def answerable(self) -> bool:
        return self.request_id is not None and self.btp_error_code is not None


class InvalidState(ConnectorError):
    """A session command was called in a state that does not allow it."""


class TransportError(ConnectorError):
    """The transport under a session failed."""


class PeerDisconnected(TransportError):
    """The connection to the peer closed, with the WebSocket close code and reason if known."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class ConfigurationError(ConnectorError):
    """Settings that cannot work, found at start-up."""
