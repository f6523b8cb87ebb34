"""The real ``python -m connector`` process with secrets from files and a previous secret:
a replaced file counts for the next connection without a restart, both secrets of a rotation get
in, and no secret's content (not even one that is not UTF-8) reaches the output."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from connector.domain.btp import frames
from tests.integration.helpers import GUARD, ROOT, BtpClient, connector_process

#: Not valid UTF-8, with a marker to search the output for.
WRONG_CONTENT = b"\xff\xfe wrong-file-content-5e0b \x00\x80\n"
MARKER = "wrong-file-content-5e0b"


async def authenticates(port: int, username: str, token: str) -> bool:
    async with BtpClient.connect(port) as client:
        return isinstance(await client.authenticate(username, token), frames.Response)


async def test_a_secret_file_replaced_in_place_counts_for_the_next_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "alice"
    path.write_bytes(b"first-secret-61aa\n")
    wrong = tmp_path / "bob"
    wrong.write_bytes(WRONG_CONTENT)
    async with connector_process(
        BTP_PEER_ALICE_SECRET_FILE=str(path), BTP_PEER_BOB_SECRET_FILE=str(wrong)
    ) as node:
        assert await authenticates(node.port, "alice", "first-secret-61aa")

        replacement = tmp_path / "alice.new"  # how Kubernetes updates a mounted secret
        replacement.write_bytes(b"second-secret-93c7\n")
        replacement.replace(path)
        assert await authenticates(node.port, "alice", "second-secret-93c7")
        assert not await authenticates(node.port, "alice", "first-secret-61aa")

        path.write_bytes(b"third-secret-0d42")  # rewritten in place, no trailing newline
        assert await authenticates(node.port, "alice", "third-secret-0d42")

        path.unlink()  # gone: nobody gets in as alice, the process keeps serving
        assert not await authenticates(node.port, "alice", "third-secret-0d42")
        assert not await authenticates(node.port, "bob", "not-bobs-5f1c")
        [starting] = node.records("connector_starting")
        assert starting["secretsInEnvironment"] == 2
        await node.wait_for("btp_disconnect", 6)
    for value in ("first-secret", "second-secret", "third-secret", MARKER, "\ufffd"):
        assert value not in node.output


async def test_during_a_rotation_the_current_and_the_previous_secret_get_in(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old"
    old.write_bytes(b"old-secret-2b8e\n")
    async with connector_process(
        BTP_PEER_ALICE_SECRET="new-secret-77d1", BTP_PEER_ALICE_SECRET_PREVIOUS_FILE=str(old)
    ) as node:
        assert await authenticates(node.port, "alice", "new-secret-77d1")
        assert await authenticates(node.port, "alice", "old-secret-2b8e")
        assert not await authenticates(node.port, "alice", "third-secret-c3a0")
        # A previous secret names no peer: alice-previous is not let in with it.
        assert not await authenticates(node.port, "alice-previous", "old-secret-2b8e")
        [starting] = node.records("connector_starting")
        assert starting["secretsInEnvironment"] == 1
    for value in ("new-secret", "old-secret", "third-secret"):
        assert value not in node.output


async def run_connector(env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "BTP_SERVER_HOST": "127.0.0.1",
            "BTP_SERVER_PORT": "0",
            "LOG_FORMAT": "json",
            "CONNECTOR_STORE_URL": "memory://",
            **env,
        },
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(GUARD):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_start_up_names_the_unreadable_secret_file_of_a_peer_we_dial(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("peers: [{id: bob, relation: peer, url: 'ws://127.0.0.1:9'}]\n")
    missing = tmp_path / "missing"
    code, out = await run_connector(
        {"CONNECTOR_CONFIG": str(config), "BTP_PEER_BOB_SECRET_FILE": str(missing)}
    )
    assert code == 2, out
    assert (
        f"peer 'bob': BTP_PEER_BOB_SECRET_FILE={missing}: "
        "cannot read the file: No such file or directory (needed to dial ws://127.0.0.1:9)"
    ) in out


async def test_start_up_refuses_a_secret_and_its_file_both_set(tmp_path: Path) -> None:
    path = tmp_path / "carol"
    path.write_bytes(WRONG_CONTENT)
    code, out = await run_connector(
        {"BTP_PEER_CAROL_SECRET": "env-value-1c9d", "BTP_PEER_CAROL_SECRET_FILE": str(path)}
    )
    assert code == 2, out
    assert "BTP_PEER_CAROL_SECRET and BTP_PEER_CAROL_SECRET_FILE are both set" in out
    assert "env-value-1c9d" not in out
    assert MARKER not in out


async def test_check_config_reports_secret_files_without_their_content(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "peers:\n"
        "  - {id: alice, relation: child}\n"
        "  - {id: bob, relation: peer, url: 'ws://127.0.0.1:9'}\n"
    )
    wrong = tmp_path / "alice"
    wrong.write_bytes(WRONG_CONTENT)
    empty = tmp_path / "bob"
    empty.write_bytes(b"\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "--check-config",
        str(config),
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "BTP_PEER_ALICE_SECRET_FILE": str(wrong),
            "BTP_PEER_BOB_SECRET_FILE": str(empty),
        },
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(GUARD):
        raw, _ = await proc.communicate()
    text = raw.decode(errors="replace")
    assert proc.returncode != 0, text
    assert f"secret BTP_PEER_ALICE_SECRET: set from file {wrong}" in text
    assert f"BTP_PEER_BOB_SECRET_FILE={empty}: the file is empty" in text
    assert MARKER not in text
    assert "\ufffd" not in text
