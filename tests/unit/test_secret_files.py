"""EnvSecretStore: secrets from files (``_SECRET_FILE``), a previous secret for rotation, and what
it says about them (never their content)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.adapters.env_secret_store import MAX_SECRET_FILE_SIZE, EnvSecretStore
from connector.app.check_config import check
from connector.domain.auth import AuthPolicy
from connector.domain.errors import ConfigurationError
from connector.domain.secret import Secret

#: Never valid UTF-8, and a marker to search for: a wrong secret file's content.
CONTENT = b"\xff\xfe file-content-8c1e \x00\x80"
MARKER = "file-content-8c1e"


def revealed(secrets: tuple[Secret, ...]) -> list[bytes]:
    return [s.reveal() for s in secrets]


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_file_secret_is_its_content_with_one_trailing_newline_stripped(tmp_path: Path) -> None:
    cases = {
        b"s3cret\n": b"s3cret",
        b"s3cret": b"s3cret",
        b"s3cret\n\n": b"s3cret\n",  # one newline only: the rest is the secret's
        b" spaced \r\n": b" spaced \r",
        CONTENT: CONTENT,  # bytes as they are, never decoded
    }
    for i, (data, secret) in enumerate(cases.items()):
        path = write(tmp_path / f"s{i}", data)
        found = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": path}).secret_for("alice")
        assert found is not None
        assert found.reveal() == secret


def test_the_file_is_read_at_every_use_so_a_replaced_one_counts_at_once(tmp_path: Path) -> None:
    path = tmp_path / "alice"
    store = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": write(path, b"one\n")})
    policy = AuthPolicy(store)
    assert policy.authenticate("alice", Secret(b"one")).accepted
    replacement = tmp_path / "alice.new"
    replacement.write_bytes(b"two\n")
    replacement.replace(path)  # what Kubernetes does, atomically
    assert not policy.authenticate("alice", Secret(b"one")).accepted
    assert policy.authenticate("alice", Secret(b"two")).accepted
    path.write_bytes(b"three")  # rewritten in place
    found = store.secret_for("alice")
    assert found is not None
    assert found.reveal() == b"three"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "cannot read the file: No such file or directory"),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (lambda p: p.write_bytes(b"\n"), "the file is empty"),
        (lambda p: p.mkdir(), "cannot read the file: Is a directory"),
        (
            lambda p: p.write_bytes(b"x" * (MAX_SECRET_FILE_SIZE + 1)),
            "the file is larger than 65536 bytes",
        ),
    ],
)
def test_an_unusable_file_is_no_secret_and_says_why_without_content(
    tmp_path: Path, make: object, problem: str
) -> None:
    path = tmp_path / "alice"
    make(path)  # type: ignore[operator]
    store = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": str(path)})
    assert store.secret_for("alice") is None
    assert store.accepted("alice") == ()
    reason = store.missing_reason("alice")
    assert reason == f"BTP_PEER_ALICE_SECRET_FILE={path}: {problem}"
    assert store.problems("alice") == [reason]
    assert store.status("alice") == reason
    assert "xxxx" not in reason


def test_an_unreadable_file_names_the_os_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir" / "alice"
    (tmp_path / "not-a-dir").write_bytes(b"s3cret")
    store = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": str(path)})
    assert store.secret_for("alice") is None
    assert store.missing_reason("alice").endswith("cannot read the file: Not a directory")


def test_the_read_is_capped_on_an_endless_file() -> None:
    store = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": "/dev/zero"})
    assert store.secret_for("alice") is None
    assert "larger than" in store.missing_reason("alice")


def test_a_fifo_without_data_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer_side = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that never writes
    try:
        store = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": str(fifo)})
        assert store.secret_for("alice") is None
        assert "cannot read the file" in store.missing_reason("alice")
    finally:
        os.close(writer_side)


def test_a_file_of_exactly_the_cap_is_read(tmp_path: Path) -> None:
    path = write(tmp_path / "big", b"y" * MAX_SECRET_FILE_SIZE)
    found = EnvSecretStore({"BTP_PEER_ALICE_SECRET_FILE": path}).secret_for("alice")
    assert found is not None
    assert len(found.reveal()) == MAX_SECRET_FILE_SIZE


def test_a_variable_and_its_file_both_set_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "alice", b"from-file-4417")
    env = {"BTP_PEER_ALICE_SECRET": "from-env-5521", "BTP_PEER_ALICE_SECRET_FILE": path}
    store = EnvSecretStore(env)
    assert store.secret_for("alice") is None
    assert store.accepted("alice") == ()
    both = "BTP_PEER_ALICE_SECRET and BTP_PEER_ALICE_SECRET_FILE are both set: set one of them"
    assert store.missing_reason("alice") == both
    assert store.status("alice") == both
    assert store.conflicts() == [both]
    with pytest.raises(ConfigurationError) as raised:
        EnvSecretStore.checked(env)
    assert str(raised.value) == both
    # An empty one counts as unset, as everywhere.
    assert EnvSecretStore.checked({**env, "BTP_PEER_ALICE_SECRET": ""}).secret_for("alice")


def test_a_previous_secret_and_its_file_both_set_is_refused_too(tmp_path: Path) -> None:
    env = {
        "BTP_PEER_ALICE_SECRET": "new",
        "BTP_PEER_ALICE_SECRET_PREVIOUS": "old",
        "BTP_PEER_ALICE_SECRET_PREVIOUS_FILE": write(tmp_path / "old", b"old"),
    }
    store = EnvSecretStore(env)
    assert revealed(store.accepted("alice")) == [b"new"]
    assert store.problems("alice") == [
        "BTP_PEER_ALICE_SECRET_PREVIOUS and BTP_PEER_ALICE_SECRET_PREVIOUS_FILE are both set: "
        "set one of them"
    ]
    with pytest.raises(ConfigurationError):
        EnvSecretStore.checked(env)


def test_the_previous_secret_is_accepted_but_never_presented(tmp_path: Path) -> None:
    for previous in (
        {"BTP_PEER_ALICE_SECRET_PREVIOUS": "old"},
        {"BTP_PEER_ALICE_SECRET_PREVIOUS_FILE": write(tmp_path / "old", b"old\n")},
    ):
        store = EnvSecretStore({"BTP_PEER_ALICE_SECRET": "new", **previous})
        assert revealed(store.accepted("alice")) == [b"new", b"old"]
        found = store.secret_for("alice")
        assert found is not None
        assert found.reveal() == b"new"
        assert store.problems("alice") == []


def test_a_previous_file_may_stay_configured_between_rotations(tmp_path: Path) -> None:
    path = tmp_path / "alice-previous"
    store = EnvSecretStore(
        {"BTP_PEER_ALICE_SECRET": "new", "BTP_PEER_ALICE_SECRET_PREVIOUS_FILE": str(path)}
    )
    assert revealed(store.accepted("alice")) == [b"new"]
    assert store.problems("alice") == []  # absent: no previous secret, not a problem
    path.write_bytes(b"old\n")  # a rotation begins: the key is added to the mounted secret
    assert revealed(store.accepted("alice")) == [b"new", b"old"]
    path.write_bytes(b"")  # but an empty one is a mistake worth reporting
    assert revealed(store.accepted("alice")) == [b"new"]
    assert store.problems("alice") == [
        f"BTP_PEER_ALICE_SECRET_PREVIOUS_FILE={path}: the file is empty"
    ]


def test_a_previous_secret_alone_lets_nobody_in() -> None:
    store = EnvSecretStore({"BTP_PEER_ALICE_SECRET_PREVIOUS": "old"})
    assert store.accepted("alice") == ()
    assert store.problems("alice") == ["BTP_PEER_ALICE_SECRET is not set"]
    assert store.configured_peers() == []


def test_status_says_where_each_secret_comes_from(tmp_path: Path) -> None:
    new, old = write(tmp_path / "new", b"n"), write(tmp_path / "old", b"o")
    missing = tmp_path / "gone"
    cases = [
        ({"BTP_PEER_A_SECRET": "x"}, "BTP_PEER_A_SECRET: set"),
        ({"BTP_PEER_A_SECRET_FILE": new}, f"BTP_PEER_A_SECRET: set from file {new}"),
        ({}, "BTP_PEER_A_SECRET: MISSING"),
        (
            {"BTP_PEER_A_SECRET": "x", "BTP_PEER_A_SECRET_PREVIOUS": "y"},
            "BTP_PEER_A_SECRET: set + previous",
        ),
        (
            {"BTP_PEER_A_SECRET_FILE": new, "BTP_PEER_A_SECRET_PREVIOUS_FILE": old},
            f"BTP_PEER_A_SECRET: set from file {new} + previous from file {old}",
        ),
        (
            {"BTP_PEER_A_SECRET": "x", "BTP_PEER_A_SECRET_PREVIOUS_FILE": str(missing)},
            f"BTP_PEER_A_SECRET: set, no previous (no file {missing})",
        ),
        (
            {"BTP_PEER_A_SECRET": "x", "BTP_PEER_A_SECRET_PREVIOUS_FILE": str(tmp_path)},
            f"BTP_PEER_A_SECRET: set, + previous: BTP_PEER_A_SECRET_PREVIOUS_FILE={tmp_path}: "
            "cannot read the file: Is a directory",
        ),
    ]
    for env, status in cases:
        assert EnvSecretStore(env).status("a") == status


def test_configured_peers_count_files_and_never_previous_variables() -> None:
    store = EnvSecretStore(
        {
            "BTP_PEER_ALICE_SECRET_PREVIOUS": "x",  # alice's previous: no peer
            "BTP_PEER_CAROL_SECRET_PREVIOUS_FILE": "/p",  # carol's previous: no peer
            "BTP_PEER_ALICE_PREVIOUS_SECRET": "x",  # the peer alice-previous
            "BTP_PEER_BOB_SECRET_FILE": "/p",  # bob, from a file (not read here)
            "BTP_PEER_DAN_SECRET": "x",
            "BTP_PEER_DAN_SECRET_FILE": "/p",  # a conflict, but one peer
            "BTP_PEER_X_SECRET_FILE_SECRET": "x",  # the peer x-secret-file
            "BTP_PEER_EMPTY_SECRET_FILE": "",
            "BTP_PEER__SECRET": "x",  # no PEER_ID at all
            "BTP_PEER_SECRET": "x",
            "BTP_PEER_SECRET_FILE": "x",
            "OTHER_SECRET": "x",
        }
    )
    assert store.configured_peers() == ["ALICE_PREVIOUS", "BOB", "DAN", "X_SECRET_FILE"]
    assert repr(store) == "EnvSecretStore(4 peers)"


def test_the_four_variables_of_a_peer_are_read_as_that_peer_only() -> None:
    store = EnvSecretStore(
        {
            "BTP_PEER_ALICE_SECRET": "alice",
            "BTP_PEER_ALICE_SECRET_PREVIOUS": "alice-old",
            "BTP_PEER_ALICE_PREVIOUS_SECRET": "alice-previous",
        }
    )
    assert revealed(store.accepted("alice")) == [b"alice", b"alice-old"]
    assert revealed(store.accepted("alice-previous")) == [b"alice-previous"]
    assert store.accepted("alice-secret") == ()


def test_an_environment_value_that_is_not_utf8_is_its_bytes() -> None:
    value = os.fsdecode(CONTENT)  # how Python shows such a variable: surrogate escapes
    found = EnvSecretStore({"BTP_PEER_ALICE_SECRET": value}).secret_for("alice")
    assert found is not None
    assert found.reveal() == CONTENT


def test_check_config_shows_sources_and_problems_never_content(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "peers:\n"
        "  - {id: alice, relation: child}\n"
        "  - {id: bob, relation: peer, url: 'ws://127.0.0.1:4000'}\n"
        "  - {id: carol, relation: child}\n"
    )
    wrong = write(tmp_path / "alice", CONTENT + b"\n")
    big = write(tmp_path / "big", CONTENT * (MAX_SECRET_FILE_SIZE // len(CONTENT) + 1))
    env = {
        "BTP_PEER_ALICE_SECRET_FILE": wrong,
        "BTP_PEER_ALICE_SECRET_PREVIOUS_FILE": big,
        "BTP_PEER_BOB_SECRET_FILE": str(tmp_path / "missing"),
        "BTP_PEER_CAROL_SECRET": "carol-value-3310",
        "BTP_PEER_CAROL_SECRET_FILE": wrong,
        "BTP_PEER_DAVE_SECRET": "dave-value-7781",  # not listed: start-up refuses it anyway
        "BTP_PEER_DAVE_SECRET_FILE": wrong,
    }
    text = "\n".join(check(config, env)[1])
    assert f"secret BTP_PEER_ALICE_SECRET: set from file {wrong}, + previous: " in text
    assert (
        f"warning: peer 'alice': BTP_PEER_ALICE_SECRET_PREVIOUS_FILE={big}: "
        "the file is larger than 65536 bytes"
    ) in text
    assert (
        f"error: peer 'bob': BTP_PEER_BOB_SECRET_FILE={tmp_path / 'missing'}: "
        "cannot read the file: No such file or directory"
    ) in text
    assert ("error: BTP_PEER_CAROL_SECRET and BTP_PEER_CAROL_SECRET_FILE are both set") in text
    assert "error: BTP_PEER_DAVE_SECRET and BTP_PEER_DAVE_SECRET_FILE are both set" in text
    assert text.count("BTP_PEER_CAROL_SECRET and") == 2  # the column and one error, not two
    assert "result: INVALID (3 problems)" in text  # bob's missing file, carol's, dave's
    for value in (MARKER, "carol-value-3310", "dave-value-7781", "\ufffd", "\\xff"):
        assert value not in text
