"""ILP addresses (RFC-0015): ``scheme ("." segment)+``, at most 1023 ASCII characters."""

from __future__ import annotations

import re

MAX_ADDRESS_LENGTH = 1023

SCHEMES = frozenset(
    {"g", "private", "example", "peer", "self", "test", "test1", "test2", "test3", "local"}
)

# fullmatch, not match(...$): "$" also matches before a trailing "\n". And an explicit ASCII class,
# not \w, which accepts Unicode letters (addresses.json has both traps).
_ADDRESS = re.compile(r"(?:g|private|example|peer|self|test[1-3]?|local)(?:\.[a-zA-Z0-9_~-]+)+")


#: Addresses already checked: the same few destinations come back on every packet, and a dict
#: lookup costs a tenth of the regular expression. Bounded: emptied when full.
_CHECKED: dict[str, bool] = {}
_MAX_CHECKED = 4096


def is_valid_address(address: str) -> bool:
    """Whether ``address`` follows RFC-0015 (ilp-packet's isValidIlpAddress agrees)."""
    valid = _CHECKED.get(address)
    if valid is None:
        valid = len(address) <= MAX_ADDRESS_LENGTH and _ADDRESS.fullmatch(address) is not None
        if len(_CHECKED) >= _MAX_CHECKED:
            _CHECKED.clear()
        _CHECKED[address] = valid
    return valid


def scheme_of(address: str) -> str:
    """The allocation scheme (first segment) of a valid address: ``peer`` for ``peer.config``."""
    return address.split(".", 1)[0]
