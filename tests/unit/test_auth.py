from __future__ import annotations

import hmac

import pytest

from connector.domain.auth import MAX_ACCEPTED, AuthPolicy, AuthThrottle, is_valid_peer_id
from connector.domain.secret import Secret
from tests.fakes import FakeSecretStore

POLICY = AuthPolicy(FakeSecretStore({"alice": "s3cr3t", "connector-b": "b-secret", "empty": ""}))


def test_matching_token_is_accepted_as_the_username() -> None:
    decision = POLICY.authenticate("alice", Secret(b"s3cr3t"))
    assert decision.accepted
    assert decision.peer_id == "alice"


@pytest.mark.parametrize(
    ("username", "token", "reason"),
    [
        ("alice", b"wrong", "invalid auth_token"),
        ("alice", b"", "invalid auth_token"),
        ("mallory", b"s3cr3t", "invalid auth_token"),  # unknown peer: same reason
        ("empty", b"", "invalid auth_token"),  # an empty secret never authenticates
        ("", b"s3cr3t", "auth_username is required"),
        ("al ice", b"s3cr3t", "invalid auth_username"),
        ("a" * 65, b"s3cr3t", "invalid auth_username"),
    ],
)
def test_refusals_give_a_reason_without_the_token(username: str, token: bytes, reason: str) -> None:
    decision = POLICY.authenticate(username, Secret(token))
    assert not decision.accepted
    assert decision.reason == reason
    if token:
        assert token.decode() not in decision.reason


@pytest.mark.parametrize("peer_id", ["alice", "connector-b", "A_~-9", "x" * 64])
def test_valid_peer_ids(peer_id: str) -> None:
    assert is_valid_peer_id(peer_id)


@pytest.mark.parametrize("peer_id", ["", "a.b", "a b", "ålice", "a\n", "x" * 65])
def test_invalid_peer_ids(peer_id: str) -> None:
    assert not is_valid_peer_id(peer_id)


def test_throttle_backs_off_exponentially_per_host_and_caps() -> None:
    throttle = AuthThrottle(base_delay=0.5, max_delay=4.0, window=60)
    delays = [throttle.failure("10.0.0.1", now=float(i)) for i in range(7)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert throttle.failure("10.0.0.2", now=7.0) == 0.0  # other hosts are unaffected
    assert throttle.failures("10.0.0.1") == 7


def test_throttle_forgets_on_success_and_after_the_window() -> None:
    throttle = AuthThrottle(base_delay=1.0, window=60)
    throttle.failure("h", now=0.0, username="alice")
    throttle.failure("h", now=1.0, username="alice")
    throttle.success("h", "alice")
    assert throttle.failures("h", "alice") == 2  # the host's count stays ...
    assert throttle.failure("h", now=100.0, username="alice") == 0.0  # ... until it ages out


def test_one_peers_success_never_clears_the_guesses_at_another_peers_secret() -> None:
    throttle = AuthThrottle(base_delay=1.0, window=600)
    delays = [throttle.failure("h", now=float(i), username="bob") for i in range(3)]
    assert delays == [0.0, 1.0, 2.0]
    throttle.success("h", "alice")  # the attacker's own credential, say
    assert throttle.failure("h", now=4.0, username="bob") == 4.0  # still slowed down


def test_guessing_many_usernames_from_one_host_is_slowed_down_too() -> None:
    throttle = AuthThrottle(base_delay=1.0, window=600)
    delays = [throttle.failure("h", now=float(i), username=f"u{i}") for i in range(4)]
    assert delays == [0.0, 1.0, 2.0, 4.0]


def test_throttle_memory_is_bounded() -> None:
    throttle = AuthThrottle(max_hosts=3)
    for i in range(10):
        throttle.failure(f"h{i}", now=float(i), username="x")
    assert len(throttle._failures) <= 3
    assert throttle.failures("h9", "x") == 1


def test_during_a_rotation_both_the_current_and_the_previous_secret_get_in() -> None:
    policy = AuthPolicy(FakeSecretStore({"alice": "new"}, previous={"alice": "old"}))
    assert policy.authenticate("alice", Secret(b"new")).accepted
    assert policy.authenticate("alice", Secret(b"old")).accepted
    for token in (b"other", b"", b"newold", b"\x00" * 32):
        decision = policy.authenticate("alice", Secret(token))
        assert not decision.accepted
        assert decision.reason == "invalid auth_token"


def test_the_same_comparisons_whichever_secret_matches_and_for_any_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)  # what Secret.matches calls
    store = FakeSecretStore({"alice": "new", "bob": "b"}, previous={"alice": "old"})
    policy = AuthPolicy(store, is_known=lambda peer: peer != "mallory")
    for username, token, accepted in (
        ("alice", b"new", True),
        ("alice", b"old", True),
        ("alice", b"bad", False),
        ("bob", b"b", True),
        ("carol", b"c", False),  # known, no secret
        ("mallory", b"new", False),  # unknown
    ):
        compared.clear()
        assert policy.authenticate(username, Secret(token)).accepted is accepted
        assert len(compared) == MAX_ACCEPTED == 2, username  # no short cut, no fewer
        if username == "alice":
            assert compared == [b"new", b"old"]
