"""wss:// on the real entrypoint: certificates made here with the openssl CLI, real TLS clients
(Python's, the reference JavaScript one), mutual TLS, clients that are not TLS at all, a bad
certificate file, and one connector dialing another over wss://."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from connector.domain.btp import frames
from connector.domain.ilp.packets import Reject
from tests.fakes import make_prepare
from tests.integration.helpers import GUARD, ROOT, BtpClient, connector_process, free_port
from tests.interop.peers import run_client

SECRET = "tls-secret-51c0"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=GUARD)


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "1", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def make_signed(directory: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A client certificate signed by ``ca``, and its key."""
    cert, key, csr = (directory / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "1", "-out", str(cert),
    )  # fmt: skip
    return cert, key


ALICE = "peers:\n  - {id: alice, relation: child}\n"


def write_config(path: Path, tls: dict[str, Path], peers: str = ALICE) -> Path:
    lines = ["btp_server:", "  tls:"]
    lines += [f"    {key}: {value}" for key, value in tls.items()]
    path.write_text("\n".join(lines) + "\n" + peers)
    return path


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert)


async def wss(port: int, context: ssl.SSLContext) -> BtpClient:
    async with asyncio.timeout(GUARD):
        return BtpClient(await connect(f"wss://127.0.0.1:{port}", ssl=context, max_size=None))


async def authenticate(port: int, context: ssl.SSLContext) -> frames.Frame:
    """Alice's answer to her auth over wss://."""
    client = await wss(port, context)
    try:
        return await client.authenticate("alice", SECRET)
    finally:
        await client.ws.close()


async def https_get(port: int, context: ssl.SSLContext, path: str) -> bytes:
    async with asyncio.timeout(GUARD):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        answer = await reader.read()
        writer.close()
    return answer


async def test_a_tls_client_authenticates_and_gets_a_reply(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    config = write_config(tmp_path / "c.yaml", {"cert_file": cert, "key_file": key})
    async with connector_process(
        CONNECTOR_CONFIG=str(config), BTP_PEER_ALICE_SECRET=SECRET, CONNECTOR_ILP_ADDRESS="test.t"
    ) as node:
        (started,) = node.records("btp_server_started")
        assert started["tls"] is True
        client = await wss(node.port, trusting(cert))
        try:
            assert isinstance(await client.authenticate("alice", SECRET), frames.Response)
            request_id = await client.send_prepare(make_prepare(destination="test.t.nobody"))
            got_id, reply = await client.recv_reply()
            assert got_id == request_id
            assert isinstance(reply, Reject)
            assert reply.triggered_by == "test.t"
            # Many at once, some larger than a TLS record: read across record boundaries.
            sent = [
                await client.send_prepare(
                    make_prepare(destination="test.t.nobody", data=bytes(i * 150))
                )
                for i in range(200)
            ]
            replies = [await client.recv_reply() for _ in sent]
            assert sorted(i for i, _ in replies) == sent
        finally:
            await client.ws.close()
        # Health and metrics answer on the same port, over HTTPS.
        answer = await https_get(node.port, trusting(cert), "/health/live")
        assert answer.startswith(b"HTTP/1.1 200")
        assert str(key.read_text().splitlines()[1]) not in node.output


@pytest.mark.interop
async def test_the_reference_client_dials_wss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_certificate(tmp_path)
    config = write_config(tmp_path / "c.yaml", {"cert_file": cert, "key_file": key})
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", str(cert))
    async with connector_process(
        CONNECTOR_CONFIG=str(config), BTP_PEER_ALICE_SECRET=SECRET, CONNECTOR_ILP_ADDRESS="test.t"
    ) as node:
        code, lines = await run_client(
            f"btp+wss://alice:{SECRET}@127.0.0.1:{node.port}",
            "--count",
            "1",
            "--destination",
            "test.t.bob",
        )
        assert code == 0, lines
        assert lines[0] == {"event": "connected"}
        (reply,) = [line for line in lines if line["event"] == "reply"]
        assert (reply["type"], reply["code"], reply["triggeredBy"]) == ("reject", "F02", "test.t")


async def test_mutual_tls_lets_in_only_clients_with_a_certificate_of_the_ca(
    tmp_path: Path,
) -> None:
    cert, key = make_certificate(tmp_path)
    ca = make_certificate(tmp_path, "ca")
    client_cert, client_key = make_signed(tmp_path, "alice", ca)
    stranger = make_certificate(tmp_path, "stranger")  # self-signed: not from the CA
    config = write_config(
        tmp_path / "c.yaml", {"cert_file": cert, "key_file": key, "client_ca_file": ca[0]}
    )
    async with connector_process(
        CONNECTOR_CONFIG=str(config), BTP_PEER_ALICE_SECRET=SECRET
    ) as node:
        for chain in (None, stranger):
            context = trusting(cert)
            if chain is not None:
                context.load_cert_chain(*chain)
            with pytest.raises((OSError, WebSocketException)):
                await authenticate(node.port, context)
        failed = await node.wait_for("btp_tls_failed", 2)
        assert {f["reason"] for f in failed} <= {
            "PEER_DID_NOT_RETURN_A_CERTIFICATE",
            "CERTIFICATE_VERIFY_FAILED",
        }
        context = trusting(cert)
        context.load_cert_chain(client_cert, client_key)
        assert isinstance(await authenticate(node.port, context), frames.Response)
        assert "Traceback" not in node.output
        assert not node.records("btp_auth") or all(a["success"] for a in node.records("btp_auth"))


async def test_clients_that_do_not_speak_tls_get_nothing_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    cert, key = make_certificate(tmp_path)
    config = write_config(tmp_path / "c.yaml", {"cert_file": cert, "key_file": key})
    async with connector_process(
        CONNECTOR_CONFIG=str(config), BTP_PEER_ALICE_SECRET=SECRET, CONNECTOR_AUTH_TIMEOUT="1"
    ) as node:
        with pytest.raises((OSError, WebSocketException)):
            async with asyncio.timeout(GUARD):
                await connect(f"ws://127.0.0.1:{node.port}")
        for garbage in (b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\xff" * 64):
            async with asyncio.timeout(GUARD):
                reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
                writer.write(garbage)
                answer = await reader.read()  # the server closes: EOF
                writer.close()
            assert b"HTTP" not in answer
        # A client that opens TCP and never says hello is dropped by the handshake timeout.
        async with asyncio.timeout(GUARD):
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
            assert await reader.read() == b""
            writer.close()
        await node.wait_for("btp_handshake_timeout")
        assert len(node.records("btp_tls_failed")) >= 3
        assert isinstance(await authenticate(node.port, trusting(cert)), frames.Response)
        assert node.proc.returncode is None
        assert "Traceback" not in node.output


@pytest.mark.parametrize("broken", ["cert_file", "key_file", "client_ca_file"])
async def test_a_certificate_that_will_not_load_exits_2_naming_the_file(
    tmp_path: Path, broken: str
) -> None:
    cert, key = make_certificate(tmp_path)
    tls = {"cert_file": cert, "key_file": key, "client_ca_file": cert}
    for missing in (True, False):
        bad = tmp_path / f"bad-{broken}.pem"
        if missing:
            bad.unlink(missing_ok=True)
        else:
            bad.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        config = write_config(tmp_path / "c.yaml", {**tls, broken: bad})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BTP_", "CONNECTOR_"))}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connector", "--config", str(config),
            env={**env, "CONNECTOR_STORE_URL": "memory://", "BTP_SERVER_PORT": str(free_port())},
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(GUARD):
            _, err = await proc.communicate()
        assert proc.returncode == 2, err
        assert f"btp_server.tls.{broken}".encode() in err
        assert str(bad).encode() in err
        assert b"bm90IGEga2V5" not in err


async def test_a_connector_dials_a_wss_peer_trusting_its_ca_file(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    config_a = write_config(
        tmp_path / "a.yaml",
        {"cert_file": cert, "key_file": key},
        "ilp_address: test.a\npeers:\n  - {id: b, relation: child}\n",
    )
    async with connector_process(
        CONNECTOR_CONFIG=str(config_a), BTP_PEER_B_SECRET=SECRET, CONNECTOR_NODE_ID="a"
    ) as a:
        url = f"wss://127.0.0.1:{a.port}"
        config_b = tmp_path / "b.yaml"
        config_b.write_text(
            "node_id: b\nilp_address: test.a.b\npeers:\n"
            f"  - {{id: a, relation: parent, url: '{url}', tls_ca_file: {cert}}}\n"
            # Not trusted: only the system's CAs, which did not sign our certificate.
            f"  - {{id: c, relation: peer, url: '{url}/c'}}\n"
        )
        async with connector_process(
            CONNECTOR_CONFIG=str(config_b), BTP_PEER_A_SECRET=SECRET, BTP_PEER_C_SECRET=SECRET
        ) as b:
            (auth,) = await a.wait_for("btp_auth")
            assert (auth["success"], auth["peerId"]) == (True, "b")
            failed = await b.wait_for("btp_dial_failed")
            assert failed[0]["peerId"] == "c"
            assert "CERTIFICATE_VERIFY_FAILED" in failed[0]["error"]
