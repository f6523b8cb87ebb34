"""Reload of the real process: SIGHUP and POST /reload apply the file without a restart, an
invalid file is refused and logged, and a session that was open stays open throughout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import yaml

from connector.domain.btp import frames
from connector.domain.ilp import codec
from connector.domain.ilp.packets import Reject
from tests.fakes import make_prepare
from tests.integration.helpers import BtpClient, connector_process, free_port

SECRETS = {
    "BTP_PEER_ALICE_SECRET": "alice-secret-9d1",
    "BTP_PEER_CAROL_SECRET": "carol-secret-1c2",
}
TOKEN = "admin-token-5b7e"


def write(path: Path, peers: list[dict[str, object]], **more: object) -> None:
    path.write_text(
        yaml.safe_dump({"node_id": "r", "ilp_address": "test.r", "peers": peers, **more})
    )


def post_reload(port: int, token: str = TOKEN) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/reload",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_sighup_and_post_reload_apply_the_file_and_keep_sessions(tmp_path: Path) -> None:
    path = tmp_path / "connector.yaml"
    admin_port = free_port()
    # bob is configured with no secret at all: a warning at start-up, not a refusal
    write(
        path,
        [{"id": "alice", "relation": "child"}, {"id": "bob", "relation": "child"}],
        admin={"port": admin_port},
    )
    async with connector_process(
        CONNECTOR_CONFIG=str(path), CONNECTOR_ADMIN_TOKEN=TOKEN, **SECRETS
    ) as node:
        (warning,) = node.records("config_warning")
        assert "BTP_PEER_BOB_SECRET is not set" in warning["problem"]
        async with BtpClient.connect(node.port) as alice:
            assert isinstance(await alice.authenticate("alice", SECRETS["BTP_PEER_ALICE_SECRET"]),
                              frames.Response)  # fmt: skip
            async with BtpClient.connect(node.port) as carol:  # not configured yet
                assert isinstance(
                    await carol.authenticate("carol", SECRETS["BTP_PEER_CAROL_SECRET"]),
                    frames.Error,
                )

            # SIGHUP: carol added, a static route for alice
            write(
                path,
                [{"id": "alice", "relation": "child"}, {"id": "carol", "relation": "child"}],
                admin={"port": admin_port},
                routes=[{"prefix": "test.elsewhere", "peer": "carol"}],
            )
            node.signal(signal.SIGHUP)
            (reloaded,) = await node.wait_for("config_reloaded")
            assert (reloaded["added"], reloaded["removed"]) == (["carol"], ["bob"])
            assert reloaded["trigger"] == "SIGHUP"
            async with BtpClient.connect(node.port) as carol:
                assert isinstance(
                    await carol.authenticate("carol", SECRETS["BTP_PEER_CAROL_SECRET"]),
                    frames.Response,
                )
                # alice's session from before the reload still works, with the new route
                request_id = await alice.send_prepare(make_prepare(destination="test.elsewhere.x"))
                frame = await carol.recv_frame()
                assert isinstance(frame, frames.Message)
                answer = Reject("F99", "test.r.carol", "no thanks", b"")
                await carol.ws.send(
                    frames.encode(frames.ilp_response(frame.request_id, codec.encode(answer)))
                )
                assert await alice.recv_reply() == (request_id, answer)

            # an invalid file: refused, logged, nothing changes
            path.write_text("peers: [{id: alice, relation: kid}]\n")
            status, body = await asyncio.to_thread(post_reload, admin_port)
            assert status == 400
            assert body["status"] == "invalid"
            assert "peers.0.relation" in json.dumps(body["problems"])
            (failed,) = await node.wait_for("config_reload_failed")
            assert failed["trigger"].startswith("admin ")
            assert (await asyncio.to_thread(post_reload, admin_port, "wrong"))[0] == 401

            # POST /reload with a valid file: carol removed again
            write(path, [{"id": "alice", "relation": "child"}], admin={"port": admin_port})
            status, body = await asyncio.to_thread(post_reload, admin_port)
            assert (status, body["removed"]) == (200, ["carol"])
            request_id = await alice.send_prepare(make_prepare(destination="test.r.alice2"))
            assert (await alice.recv_reply())[0] == request_id  # alice's socket never closed
        node.signal(signal.SIGTERM)
        assert await node.wait() == 0
    for secret in (*SECRETS.values(), TOKEN):
        assert secret not in node.output


async def test_sighup_never_kills_the_process_even_with_nothing_to_reload() -> None:
    async with connector_process(**SECRETS) as node:  # open mode: no file
        async with BtpClient.connect(node.port) as alice:
            assert isinstance(
                await alice.authenticate("alice", SECRETS["BTP_PEER_ALICE_SECRET"]),
                frames.Response,
            )
            node.signal(signal.SIGHUP)
            (failed,) = await node.wait_for("config_reload_failed")
            assert "open mode" in failed["problems"][0]
            request_id = await alice.send_prepare(make_prepare(destination="test.connector.x"))
            assert (await alice.recv_reply())[0] == request_id
        node.signal(signal.SIGTERM)
        assert await node.wait() == 0


async def test_sighup_while_draining_neither_kills_nor_reloads() -> None:
    secrets = {"BTP_PEER_ALICE_SECRET": "a-secret-1", "BTP_PEER_BOB_SECRET": "b-secret-2"}
    async with connector_process(**secrets) as node:
        async with BtpClient.connect(node.port) as alice, BtpClient.connect(node.port) as bob:
            assert isinstance(await alice.authenticate("alice", "a-secret-1"), frames.Response)
            assert isinstance(await bob.authenticate("bob", "b-secret-2"), frames.Response)
            request_id = await alice.send_prepare(make_prepare(destination="test.connector.bob"))
            held = await bob.recv_frame()  # bob holds it while the node drains
            assert isinstance(held, frames.Message)
            node.signal(signal.SIGTERM)
            await node.wait_for("btp_server_shutdown")
            node.signal(signal.SIGHUP)
            (failed,) = await node.wait_for("config_reload_failed")
            assert "stopping" in failed["problems"][0]
            answer = Reject("F99", "test.connector.bob", "still here", b"")
            await bob.ws.send(
                frames.encode(frames.ilp_response(held.request_id, codec.encode(answer)))
            )
            assert await alice.recv_reply() == (request_id, answer)
        assert await node.wait() == 0


async def test_sighup_while_the_process_is_still_starting_does_not_kill_it(tmp_path: Path) -> None:
    """The configuration is a FIFO: the process blocks reading it, well into start-up but before
    the node runs, and gets its SIGHUP exactly there."""
    fifo = tmp_path / "connector.yaml"
    os.mkfifo(fifo)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "--config",
        str(fifo),
        env={
            "PATH": "/usr/bin:/bin",
            "CONNECTOR_STORE_URL": "memory://",
            "BTP_SERVER_HOST": "127.0.0.1",
            "BTP_SERVER_PORT": str(port),
            "LOG_FORMAT": "json",
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    opened = False
    try:
        async with asyncio.timeout(20):
            writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)  # the reader is there
        opened = True
        proc.send_signal(signal.SIGHUP)
        os.write(writer, b"peers: [{id: alice, relation: child}]\n")  # EPIPE had it died
        os.close(writer)
        assert proc.stderr is not None
        async with asyncio.timeout(20):
            while b"btp_server_started" not in (line := await proc.stderr.readline()):
                assert line, "the process ended"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if not opened:  # release a writer thread still waiting for a reader
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
