"""What the Dockerfile promises, tested without Docker (no engine on these machines): the
entrypoint runs as the image's non-root user (uid 10001), reads its configuration from the
path CONNECTOR_CONFIG names, and, as PID 1 of its own PID namespace, drains and exits 0 on
SIGTERM. Needs root for the namespace and the user switch, as CI has."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from connector.domain.btp import frames
from tests.integration.helpers import GUARD, BtpClient, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
    reason="needs root with unshare and setpriv (CI has both)",
)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


async def test_runs_non_root_as_pid_1_reads_config_and_exits_0_on_sigterm() -> None:
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="connector-image-"))
    folder.chmod(0o755)
    config = folder / "connector.yaml"  # stands in for /etc/connector/connector.yaml
    config.write_text(
        "node_id: boxed\nilp_address: test.boxed\npeers: [{id: alice, relation: child}]\n"
    )
    config.chmod(0o644)
    data = folder / "data"  # the image's WORKDIR, /var/lib/connector, owned by its user
    data.mkdir()
    os.chown(data, 10001, 10001)
    env = {
        "PATH": "/usr/bin:/bin",
        "CONNECTOR_CONFIG": str(config),
        "BTP_SERVER_HOST": "127.0.0.1",
        "BTP_SERVER_PORT": str(port),
        "BTP_PEER_ALICE_SECRET": "boxed-secret",
        "LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "setpriv",
        "--reuid",
        "10001",
        "--regid",
        "10001",
        "--clear-groups",
        sys.executable,
        "-m",
        "connector",
        env=env,
        cwd=data,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(GUARD):
            while True:
                try:
                    async with BtpClient.connect(port) as client:
                        reply = await client.authenticate("alice", "boxed-secret")
                    break
                except OSError:
                    await asyncio.sleep(0.05)
        assert isinstance(reply, frames.Response)  # the file's peer list was read
        (child,) = _children(proc.pid)
        status = Path(f"/proc/{child}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:3] == ["10001", "10001"]
        nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1"  # PID 1 in its namespace, as in a container
        os.kill(child, signal.SIGTERM)
        async with asyncio.timeout(GUARD):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"btp_server_stopped" in err
        assert (data / "connector.sqlite3").exists()  # the default store, in the WORKDIR
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
