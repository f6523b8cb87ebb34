"""A secret that cannot leak by accident: no repr, no str, compared only in constant time."""

from __future__ import annotations

import hmac


class Secret:
    """Wraps a shared secret or a presented token. ``repr`` and ``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("Secret takes bytes")
        self._value = value

    def matches(self, candidate: Secret) -> bool:
        """Constant-time comparison (hmac.compare_digest), the only way to look at the value."""
        return hmac.compare_digest(self._value, candidate._value)

    def reveal(self) -> bytes:
        """The raw bytes, for the one place that must send them (an outgoing auth)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other)

    def __hash__(self) -> int:
        raise TypeError("Secret is not hashable")

    def __reduce__(self) -> str:
        raise TypeError("Secret cannot be pickled")
