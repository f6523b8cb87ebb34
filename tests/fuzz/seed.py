"""Seeds ``tests/fuzz/corpus/<target>/`` from the golden vectors (``python -m tests.fuzz.seed``):
each vector's bytes become a file named by its hash. Kept in the repository; fuzzing adds to it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from connector.domain.ildcp import IldcpResponse
from tests.vectors import load

CORPUS = Path(__file__).resolve().parent / "corpus"


def seeds() -> dict[str, list[bytes]]:
    btp = load("btp.json")
    ilp = load("ilp.json")
    ccp = load("ccp.json")
    frames = [bytes.fromhex(v["hex"]) for v in btp["valid"] + btp["invalid"] if "hex" in v]
    packets = [bytes.fromhex(v["hex"]) for v in ilp["valid"] + ilp["invalid"] if "hex" in v]
    session = [b"".join(bytes([len(f)]) + f for f in frames if len(f) < 256)[:4096]]
    session += [bytes([len(f)]) + f for f in frames if len(f) < 256]
    return {
        "btp_frame": frames,
        "ilp_packet": packets,
        "ccp_control": [bytes.fromhex(v["payload_hex"]) for v in ccp["control"]],
        "ccp_update": [bytes.fromhex(v["payload_hex"]) for v in ccp["update"]],
        "ildcp": [
            IldcpResponse("test.connector.alice", 9, "USD").encode(),
            IldcpResponse("g.x", 2, "EUR").encode(),
        ],
        "session": session,
    }


def main() -> None:
    for target, inputs in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)  # noqa: S324 - a name
        print(f"{target}: {len(list(folder.iterdir()))} inputs")


if __name__ == "__main__":
    main()
