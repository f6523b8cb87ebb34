"""``--check-config`` and start-up read the same effective configuration (file + environment),
report every problem in one run, name variables as they were set, and exit alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connector.adapters.env_secret_store import EnvSecretStore
from connector.app.check_config import check
from connector.app.effective_config import InvalidConfiguration, load_effective
from connector.app.settings import EnvironmentProblems, Settings
from tests.fakes import FakeSecretStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "connector.yaml"
BASE_ENV = {"PATH": "/usr/bin:/bin", "CONNECTOR_STORE_URL": "memory://"}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real entrypoint; these configurations never start it, so it exits at once."""
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        env={**BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"LOG_LEVEL": "verbose", "BTP_SERVER_PORT": "abc"},
            ["LOG_LEVEL='verbose': must be", "BTP_SERVER_PORT='abc': must be a valid integer"],
        ),
        (
            {"CONNECTOR_MAX_INFLIGHT": "5"},
            ["CONNECTOR_MAX_INFLIGHT: not a variable", "did you mean CONNECTOR_MAX_IN_FLIGHT?"],
        ),
        (
            {"CONNECTOR_MAX_FRAME_SIZE": "5"},
            ["CONNECTOR_MAX_FRAME_SIZE='5': must be greater than or equal to 40000"],
        ),
        ({"BTP_PEER_BOB_SECRET": ""}, ["BTP_PEER_BOB_SECRET is not set (needed to dial"]),
        (
            {"CONNECTOR_STORE_URL": "postgresq://admin:hunter2@db/x"},
            ["CONNECTOR_STORE_URL='postgresq://admin:***@db/x': use memory://"],
        ),
    ],
)
def test_check_config_and_start_up_agree(env: dict[str, str], expected: list[str]) -> None:
    env = {"BTP_PEER_ALICE_SECRET": "a", "BTP_PEER_BOB_SECRET": "b", **env}
    checked = run("--check-config", str(EXAMPLE), env=env)
    started = run("--config", str(EXAMPLE), env=env)
    assert checked.returncode == started.returncode == 2, checked.stdout + started.stderr
    for text in expected:
        assert text in checked.stdout
        assert text in started.stderr
    for output in (checked.stdout, started.stderr):
        assert "hunter2" not in output
        assert "pydantic" not in output
        assert "https://" not in output  # no library documentation URL
        assert "Traceback" not in output


def test_check_config_without_a_file_argument_checks_connector_config() -> None:
    env = {"BTP_PEER_ALICE_SECRET": "a", "BTP_PEER_BOB_SECRET": "b"}
    checked = run("--check-config", env={**env, "CONNECTOR_CONFIG": str(EXAMPLE)})
    assert checked.returncode == 0, checked.stdout
    assert f"config: {EXAMPLE}" in checked.stdout
    checked = run("--check-config", "--config", str(EXAMPLE), env=env)
    assert checked.returncode == 0, checked.stdout


def test_check_config_shows_what_the_environment_overrides() -> None:
    env = {
        "BTP_PEER_ALICE_SECRET": "a",
        "BTP_PEER_BOB_SECRET": "b",
        "BTP_SERVER_PORT": "4555",
        "CONNECTOR_NODE_ID": "from-env",
    }
    code, lines = check(EXAMPLE, env)
    assert code == 0, lines
    assert (
        "node: from-env (from CONNECTOR_NODE_ID)  address: test.a  "
        "listen: ws://0.0.0.0:4555 (from BTP_SERVER_PORT)  asset: USD/9"
    ) in lines


def test_a_configured_peer_without_a_secret_is_a_warning_in_both() -> None:
    env = {"BTP_PEER_BOB_SECRET": "b"}  # alice (a child that dials us) has none
    code, lines = check(EXAMPLE, env)
    assert code == 0, lines
    assert "  warning: peer 'alice': BTP_PEER_ALICE_SECRET is not set: it cannot log in yet" in (
        lines
    )
    assert lines[-1] == "result: OK (1 warning)"
    effective = load_effective(env, EXAMPLE, EnvSecretStore(env))
    assert effective.warnings == (
        "peer 'alice': BTP_PEER_ALICE_SECRET is not set: it cannot log in yet",
    )


def test_every_problem_of_a_file_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "node_id: 'a b'\n"
        "btp_server: {port: 99999}\n"
        "colour: blue\n"
        "peers:\n"
        "  - {id: alice, relation: kid}\n"
        "  - {id: alice, relation: child}\n"
        "routes:\n"
        "  - {prefix: test.x, peer: carol}\n"
    )
    with pytest.raises(InvalidConfiguration) as raised:
        load_effective({"BTP_SERVER_PORT": "x"}, path, FakeSecretStore({}))
    text = "\n".join(raised.value.problems)
    for problem in (
        "environment: BTP_SERVER_PORT='x'",
        "node_id: must be 1-64 characters",
        "btp_server.port: must be less than or equal to 65535",
        "colour: unknown key",
        "peers.0.relation: must be 'child', 'peer' or 'parent'",
        "peers: duplicate id alice",  # a cross-field check, though fields failed too
        "routes.0.peer: 'carol' is not a configured peer",
    ):
        assert problem in text, text


def test_variables_are_read_exactly_and_empty_counts_as_unset() -> None:
    assert Settings.from_environment({"CONNECTOR_NODE_ID": ""}).node_id == "connector"
    assert Settings.from_environment({"CONNECTOR_ADMIN_TOKEN": "t"}).node_id == "connector"
    with pytest.raises(EnvironmentProblems) as raised:
        Settings.from_environment({"LOG_LEVEL": "info", "CONNECTOR_LOG_LEVEL": "debug"})
    assert raised.value.problems == [
        "LOG_LEVEL: CONNECTOR_LOG_LEVEL sets the same thing; set only one"
    ]
    with pytest.raises(EnvironmentProblems):
        Settings.from_environment({"BTP_SERVER_PROT": "3000"})
    # other programs' variables are none of ours
    assert Settings.from_environment({"BTP_PEER_X_SECRET": "s", "HOME": "/"}).node_id == "connector"


def test_a_certificate_that_will_not_load_is_refused_alike(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    missing = tmp_path / "nope.pem"
    config.write_text(f"btp_server: {{tls: {{cert_file: '{missing}', key_file: '{missing}'}}}}\n")
    checked = run("--check-config", str(config), env={})
    started = run("--config", str(config), env={})
    assert checked.returncode == started.returncode == 2, checked.stdout + started.stderr
    problem = f"btp_server.tls.cert_file: cannot read {missing}"
    assert problem in checked.stdout
    assert problem in started.stderr
    assert "listen: wss://0.0.0.0:3000" in checked.stdout


def test_required_peers_must_be_configured_peers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("peers: [{id: a, relation: child}]\nhealth: {require_peers: [a, nobody]}\n")
    with pytest.raises(InvalidConfiguration) as raised:
        load_effective({}, path, FakeSecretStore({"a": "s"}))
    assert raised.value.problems == [
        f"{path}: health.require_peers.1: 'nobody' is not a configured peer"
    ]


def test_check_config_names_the_variable_as_it_was_spelled() -> None:
    env = {"BTP_PEER_ALICE_SECRET": "a", "BTP_PEER_BOB_SECRET": "b"}
    code, lines = check(EXAMPLE, {**env, "CONNECTOR_BTP_SERVER_PORT": "4556"})
    assert code == 0, lines
    assert any("listen: ws://0.0.0.0:4556 (from CONNECTOR_BTP_SERVER_PORT)" in x for x in lines)


def test_check_config_shows_an_address_to_come_from_the_parent(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "node_id: c\n"
        "peers:\n"
        "  - {id: kid, relation: child}\n"
        "  - {id: up, relation: parent}\n"
        "  - {id: up2, relation: parent}\n"
    )
    env = {"BTP_PEER_KID_SECRET": "k", "BTP_PEER_UP_SECRET": "u", "BTP_PEER_UP2_SECRET": "v"}
    code, lines = check(path, env)
    text = "\n".join(lines)
    assert code == 0, text
    assert "address: (from parent up over IL-DCP)" in text
    assert "<up's answer>.kid" in text
    code, lines = check(path, {**env, "CONNECTOR_ILP_ADDRESS": "test.env"})
    text = "\n".join(lines)
    assert "address: test.env (from CONNECTOR_ILP_ADDRESS)" in text
    assert "test.env.kid" in text


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfepeers: []", "not UTF-8 text (byte 0); save it as UTF-8"),
        (b"node_id: a\n\x80\x81", "not UTF-8 text (byte 11)"),
        (b"a: [\n", "not valid YAML: expected the node content, but found '<stream end>'"),
        (b"peers: [{id: a, relation: peer, url: 'ws://'}]", "peers.0.url: has no host"),
        (b"peers: [{id: a, relation: peer, url: 'wss://[::1'}]", "is not a valid URL"),
        (b"peers: [{id: a, relation: peer, url: 'ws://h:99999'}]", "Port out of range"),
    ],
)
def test_unreadable_files_and_urls_are_one_problem_each_and_exit_2(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    checked = run("--check-config", str(path), env={"BTP_PEER_A_SECRET": "s"})
    started = run("--config", str(path), env={"BTP_PEER_A_SECRET": "s"})
    assert checked.returncode == started.returncode == 2, checked.stdout + started.stderr
    assert problem in checked.stdout
    assert problem in started.stderr
    assert "result: INVALID (1 problem)" in checked.stdout
    assert "Traceback" not in checked.stdout + started.stderr
