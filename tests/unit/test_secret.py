from __future__ import annotations

import pickle

import pytest

from connector.adapters.env_secret_store import EnvSecretStore, secret_variable
from connector.domain.secret import Secret


def test_secret_never_shows_its_value() -> None:
    secret = Secret(b"hunter2")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "hunter2" not in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        hash(secret)


def test_secret_compares_by_value() -> None:
    assert Secret(b"a").matches(Secret(b"a"))
    assert not Secret(b"a").matches(Secret(b"b"))
    assert Secret(b"a") == Secret(b"a")
    assert Secret(b"a") != b"a"
    assert not Secret(b"")
    with pytest.raises(TypeError):
        Secret("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer_id", "variable"),
    [
        ("connector-b", "BTP_PEER_CONNECTOR_B_SECRET"),
        ("alice", "BTP_PEER_ALICE_SECRET"),
        ("Bob~2", "BTP_PEER_BOB_2_SECRET"),
    ],
)
def test_variable_names_follow_the_promised_pattern(peer_id: str, variable: str) -> None:
    assert secret_variable(peer_id) == variable


def test_env_store_reads_the_environment_and_treats_empty_as_unset() -> None:
    store = EnvSecretStore(
        {"BTP_PEER_CONNECTOR_B_SECRET": "b", "BTP_PEER_EMPTY_SECRET": "", "OTHER": "x"}
    )
    found = store.secret_for("connector-b")
    assert found is not None
    assert found.matches(Secret(b"b"))
    assert store.secret_for("empty") is None
    assert store.secret_for("nobody") is None
    assert store.configured_peers() == ["CONNECTOR_B"]
    assert "b'" not in repr(store)


def test_env_store_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTP_PEER_ZED_SECRET", "z")
    found = EnvSecretStore().secret_for("zed")
    assert found is not None
    assert found.matches(Secret(b"z"))


def test_env_store_names_each_peer_with_a_secret_by_the_id_that_reads_it() -> None:
    store = EnvSecretStore(
        {
            "BTP_PEER_CONNECTOR_B_SECRET": "b",
            "BTP_PEER_ALICE_SECRET": "a",
            "BTP_PEER_EMPTY_SECRET": "",
            "BTP_PEER_alice_SECRET": "lower case: no id reads it",
            "BTP_PEER_X.Y_SECRET": "no valid id",
            "OTHER": "x",
        }
    )
    assert store.peer_ids() == ["alice", "connector-b"]
    for peer_id in store.peer_ids():
        assert store.secret_for(peer_id) is not None
