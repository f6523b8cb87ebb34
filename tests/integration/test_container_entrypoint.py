"""What the Dockerfile promises, tested without Docker (no engine on these machines): the
entrypoint runs as the image's non-root user (uid 10001), reads its configuration from the
path CONNECTOR_CONFIG names, and, as PID 1 of its own PID namespace, drains and exits 0 on
SIGTERM. Needs root for the namespace and the user switch, as CI has.

The entrypoint runs a copy of the sources under test (so a checkout in a directory other users
cannot read still works) with this interpreter and its packages, which uid 10001 must be able to
reach: when it cannot (a virtualenv under a private home directory, say), the test says so and
skips, rather than waiting for a server that can never start."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

import connector
from connector.domain.btp import frames
from tests.integration.helpers import GUARD, BtpClient, free_port

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")),
    reason="needs root with unshare and setpriv (CI has both)",
)


IMAGE_USER = ["setpriv", "--reuid", "10001", "--regid", "10001", "--clear-groups"]


def _copy_sources(folder: Path) -> Path:
    """The package under test (the one this process imported), readable by everyone, as the
    image's site-packages is; returns the directory to put on PYTHONPATH."""
    target = folder / "src"
    shutil.copytree(
        Path(connector.__file__).parent,
        target / "connector",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for path in (target, *target.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


async def _why_the_image_user_cannot_run(python: str, sources: Path, cwd: Path) -> str | None:
    """None when uid 10001 can start ``python`` and import the entrypoint, with its
    dependencies, from ``sources``; otherwise why not. Bounded: it never hangs the test."""
    probe = "import connector.app.main, connector; print(connector.__file__)"
    proc = await asyncio.create_subprocess_exec(
        *IMAGE_USER,
        python,
        "-c",
        probe,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(sources)},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(GUARD):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"uid 10001 could not import the connector with {python} within {GUARD} s"
    if proc.returncode != 0:
        last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return f"uid 10001 cannot run the connector with {python} (exit {proc.returncode}): {last}"
    found = Path(out.decode().strip())
    if not found.is_relative_to(sources):
        return f"uid 10001 cannot read the sources in {sources} (it imported {found})"
    return None


async def test_detects_sources_the_image_user_cannot_read(tmp_path: Path) -> None:
    """The probe above, on sources in a directory only root may enter (a 0700 checkout)."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    sources = _copy_sources(private)
    private.chmod(0o700)
    tmp_path.chmod(0o755)
    reason = await _why_the_image_user_cannot_run(sys.executable, sources, tmp_path)
    assert reason is not None
    assert "uid 10001" in reason


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
        "PYTHONPATH": str(_copy_sources(folder)),
    }
    reason = await _why_the_image_user_cannot_run(sys.executable, Path(env["PYTHONPATH"]), data)
    if reason is not None:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"{reason}; give other users read access to the interpreter and its packages")
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        *IMAGE_USER,
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
                    if proc.returncode is not None:  # it will never listen: say why, now
                        _, err = await proc.communicate()
                        pytest.fail(f"exited {proc.returncode}:\n{err.decode()}")
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
