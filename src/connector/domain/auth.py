"""Who may connect: the auth policy (RFC-0023 §Authentication) and the failed-auth throttle.

Pure: the policy asks a ``SecretStore`` port for the peer's secrets and compares in constant time;
the throttle counts failures per remote host on times it is given. Reasons returned here go to the
peer and to logs, so they never include a token or a secret.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from connector.domain.ports import SecretStore
from connector.domain.secret import Secret

#: A peer id becomes an ILP address segment and part of an environment variable name, so it is
#: held to the address segment characters (RFC-0015) and a sane length.
_PEER_ID = re.compile(r"[A-Za-z0-9_~-]{1,64}")


def is_valid_peer_id(peer_id: str) -> bool:
    return _PEER_ID.fullmatch(peer_id) is not None


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """``peer_id`` when accepted; otherwise ``reason``, safe to send and log."""

    peer_id: str | None
    reason: str

    @property
    def accepted(self) -> bool:
        return self.peer_id is not None


class AuthPolicy:
    """Accepts a peer whose ``auth_token`` equals a secret accepted for its ``auth_username``
    (its current one or, during a rotation, its previous one).

    The username is required (it names the account and its secret); ``is_known`` limits who may
    connect at all (the configured peers). Unknown peers and wrong tokens get the same reason, so a
    client cannot probe which peer ids exist.
    """

    def __init__(self, secrets: SecretStore, is_known: Callable[[str], bool] | None = None) -> None:
        self._secrets = secrets
        self._is_known = is_known or (lambda peer_id: True)

    def authenticate(self, username: str, token: Secret) -> AuthDecision:
        if not username:
            return AuthDecision(None, "auth_username is required")
        if not is_valid_peer_id(username):
            return AuthDecision(None, "invalid auth_username")
        # Asked even for a peer not listed: being listed must not change the work done.
        found = self._secrets.accepted(username)
        accepted = found if self._is_known(username) else ()
        # Always the same comparisons, each in constant time and none skipped: an unknown peer,
        # a peer with one secret and one in the middle of a rotation take the same work, and so
        # does a token matching the first secret or the second.
        ok = False
        for i in range(max(MAX_ACCEPTED, len(accepted))):
            real = i < len(accepted)
            expected = accepted[i] if real else _NO_SECRET
            matched = expected.matches(token)
            ok |= matched & real & bool(expected)
        if not ok:
            return AuthDecision(None, "invalid auth_token")
        return AuthDecision(username, "ok")


#: Secrets accepted per peer: the current one and, during a rotation, the previous one.
MAX_ACCEPTED = 2
_NO_SECRET = Secret(b"\x00" * 32)


class AuthThrottle:
    """Slows down repeated auth failures: exponential delay, bounded memory.

    Failures count per (host, username) and per host: guessing one peer's secret and trying many
    usernames are both slowed. ``failure()`` records one and returns how long to wait before
    answering it, by the larger of the two counts; ``success()`` forgets that username at that
    host only, so one valid credential never clears the failures of another peer's guesses.
    Failures older than ``window`` seconds no longer count. At most ``max_hosts`` keys are
    tracked; the least recently failing is forgotten first.
    """

    def __init__(
        self,
        *,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        window: float = 300.0,
        max_hosts: int = 10_000,
    ) -> None:
        self._base = base_delay
        self._max = max_delay
        self._window = window
        self._max_hosts = max_hosts
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failure(self, host: str, now: float, username: str = "") -> float:
        """Record a failure at ``now`` (seconds, from the injected clock); the delay (seconds)
        before replying."""
        count = max(self._bump(host, now), self._bump(f"{host} {username}", now))
        while len(self._failures) > self._max_hosts:
            self._failures.popitem(last=False)
        if count == 1:
            return 0.0
        return float(min(self._max, self._base * 2 ** (count - 2)))

    def _bump(self, key: str, now: float) -> int:
        count, last = self._failures.pop(key, (0, now))
        if now - last > self._window:
            count = 0
        count += 1
        self._failures[key] = (count, now)
        return count

    def success(self, host: str, username: str = "") -> None:
        self._failures.pop(f"{host} {username}", None)

    def failures(self, host: str, username: str = "") -> int:
        """The larger of the host's count and this username's at the host."""
        failures = self._failures
        return max(failures.get(host, (0, 0.0))[0], failures.get(f"{host} {username}", (0, 0.0))[0])
