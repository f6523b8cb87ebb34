"""Admission: whether a peer's auth MESSAGE lets it in, and how long to wait before saying no.

Pure: the auth policy (constant-time secret check) and the failed-auth throttle, on times it is
given. The link acts on the decision; metrics and logs read its ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connector.domain.auth import AuthPolicy, AuthThrottle
from connector.domain.secret import Secret


class AuthFailure(StrEnum):
    """Why a connection was not let in: the label of ``connector_auth_failures_total``."""

    INVALID_TOKEN = "invalid_token"  # noqa: S105 - a label, not a secret
    MISSING_USERNAME = "missing_username"
    INVALID_USERNAME = "invalid_username"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"


_REASONS = {
    "invalid auth_token": AuthFailure.INVALID_TOKEN,
    "auth_username is required": AuthFailure.MISSING_USERNAME,
    "invalid auth_username": AuthFailure.INVALID_USERNAME,
    "authentication timed out": AuthFailure.TIMEOUT,
}


def failure_of(reason: str) -> AuthFailure:
    """The fixed label of a refusal reason (anything unexpected is ``malformed``)."""
    return _REASONS.get(reason, AuthFailure.MALFORMED)


@dataclass(frozen=True, slots=True)
class AdmissionDecision:
    """``peer_id`` when admitted. Otherwise ``reason`` (safe to send and log: never a token),
    its label ``failure``, ``delay`` seconds to wait before answering, and the host's
    ``failures`` so far."""

    peer_id: str | None
    reason: str
    failure: AuthFailure | None = None
    delay: float = 0.0
    failures: int = 0


class Admission:
    def __init__(self, policy: AuthPolicy, throttle: AuthThrottle) -> None:
        self.policy = policy
        self.throttle = throttle

    def decide(self, host: str, username: str, token: Secret, now: float) -> AdmissionDecision:
        """Admit or refuse the peer at ``host`` presenting ``username``/``token`` at ``now``
        (seconds)."""
        decision = self.policy.authenticate(username, token)
        # The username as presented (bounded: it is a key of the throttle's memory).
        name = username[:64]
        if decision.peer_id is not None:
            self.throttle.success(host, name)
            return AdmissionDecision(decision.peer_id, "ok")
        delay = self.throttle.failure(host, now, name)
        return AdmissionDecision(
            None,
            decision.reason,
            failure_of(decision.reason),
            delay,
            self.throttle.failures(host, name),
        )
