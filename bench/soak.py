"""Soak: a million packets through three connector processes, with balances on SQLite.

    sender ── A: test.a ══ B: test.b ══ C: test.c ── receiver

A and C dial B; all three learn their routes by route exchange (no static routes); each keeps
balances in its own SQLite file, with limits far above what the run sends. The harness
(bench/harness.js: the real ilp-plugin-btp as sender and receiver, every Fulfill checked) keeps
``--in-flight`` Prepares going until ``--packets`` are answered. Every ``--every`` seconds each
connector's resident memory, open file descriptors and asyncio tasks are sampled; the table at
the end shows them over time (flat is the goal) and the balances each node committed.

    .venv/bin/python bench/soak.py [--packets 1000000] [--in-flight 50] [--every 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from forwarding_bench import free_port, wait_port  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"ab": "ab-secret", "cb": "cb-secret", "sender": "s-secret", "receiver": "r-secret"}
BIG = 10**18


def configs(ports: dict[str, int]) -> dict[str, str]:
    b_url = f"ws://127.0.0.1:{ports['b']}"
    return {
        "a": f"""
node_id: a
ilp_address: test.a
btp_server: {{host: 127.0.0.1, port: {ports["a"]}}}
routing: {{broadcast_interval_ms: 5000}}
peers:
  - {{id: sender, relation: child, balance: {{maximum: {BIG}}}}}
  - {{id: b, relation: peer, url: "{b_url}", username: a, balance: {{minimum: -{BIG}}}}}
""",
        "b": f"""
node_id: b
ilp_address: test.b
btp_server: {{host: 127.0.0.1, port: {ports["b"]}}}
routing: {{broadcast_interval_ms: 5000}}
peers:
  - {{id: a, relation: peer, balance: {{maximum: {BIG}}}}}
  - {{id: c, relation: peer, balance: {{minimum: -{BIG}}}}}
""",
        "c": f"""
node_id: c
ilp_address: test.c
btp_server: {{host: 127.0.0.1, port: {ports["c"]}}}
routing: {{broadcast_interval_ms: 5000}}
peers:
  - {{id: receiver, relation: child, balance: {{minimum: -{BIG}}}}}
  - {{id: b, relation: peer, url: "{b_url}", username: c, balance: {{maximum: {BIG}}}}}
""",
    }


def start(name: str, tmp: Path, config: str, port: int) -> subprocess.Popen[bytes]:
    path = tmp / f"{name}.yaml"
    path.write_text(config)
    env = {
        **os.environ,
        "CONNECTOR_STORE_URL": f"sqlite:///{tmp / f'{name}.sqlite3'}",
        "BTP_PEER_SENDER_SECRET": SECRETS["sender"],
        "BTP_PEER_RECEIVER_SECRET": SECRETS["receiver"],
        "BTP_PEER_A_SECRET": SECRETS["ab"],
        "BTP_PEER_B_SECRET": SECRETS["ab"] if name == "a" else SECRETS["cb"],
        "BTP_PEER_C_SECRET": SECRETS["cb"],
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
    }
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "--config", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    wait_port(port, proc)
    return proc


def sample(proc: subprocess.Popen[bytes], port: int) -> dict[str, float]:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    tasks = float(re.search(r"^connector_tasks (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return {"rss": rss, "fds": fds, "tasks": tasks}


def balances(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {a: int(b) for a, b in db.execute("SELECT account, balance FROM balances")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--every", type=float, default=15.0)
    args = parser.parse_args()
    ports = {name: free_port() for name in "abc"}
    samples: list[tuple[float, dict[str, dict[str, float]]]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        procs = {}
        try:
            procs["b"] = start("b", tmp, configs(ports)["b"], ports["b"])
            for name in "ac":
                procs[name] = start(name, tmp, configs(ports)[name], ports[name])
            time.sleep(3)  # links up, routes exchanged
            harness = subprocess.Popen(
                [
                    "node", str(ROOT / "bench" / "harness.js"),
                    "--sender", f"btp+ws://sender:{SECRETS['sender']}@127.0.0.1:{ports['a']}",
                    "--receiver", f"btp+ws://receiver:{SECRETS['receiver']}@127.0.0.1:{ports['c']}",
                    "--destination", "test.c.receiver.x",
                    "--levels", str(args.in_flight), "--seconds", "86400", "--warmup", "0",
                    "--total", str(args.packets),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            started = time.monotonic()
            result: dict[str, Any] = {}
            done = threading.Event()

            def read() -> None:
                assert harness.stdout is not None
                for line in harness.stdout:
                    event = json.loads(line)
                    if event["event"] == "level":
                        result.update(event)
                done.set()

            threading.Thread(target=read, daemon=True).start()
            while not done.wait(args.every):
                samples.append(
                    (time.monotonic() - started, {n: sample(p, ports[n]) for n, p in procs.items()})
                )
            samples.append(
                (time.monotonic() - started, {n: sample(p, ports[n]) for n, p in procs.items()})
            )
            harness.wait(timeout=60)
            time.sleep(1)
            books = {n: balances(tmp / f"{n}.sqlite3") for n in "abc"}
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(
        f"soak: {result.get('fulfilled', 0):,} fulfilled, {result.get('other', 0):,} other, in "
        f"{result.get('seconds', 0):.0f} s ({result.get('packetsPerSecond', 0):,.0f}/s, p99 "
        f"{result.get('p99') or 0:.1f} ms), {args.in_flight} in flight, through three "
        f"connectors with SQLite balances; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}\n"
    )
    print("| seconds | RSS MiB a/b/c | fds a/b/c | tasks a/b/c |")
    print("|---|---|---|---|")
    for at, by in samples:
        row = [by[n] for n in "abc"]
        cells = [" / ".join(f"{r[key]:.0f}" for r in row) for key in ("rss", "fds", "tasks")]
        print(f"| {at:.0f} | {cells[0]} | {cells[1]} | {cells[2]} |")
    print(f"\nbalances committed: {json.dumps(books)}")
    amount = 10 * int(result.get("fulfilled", 0))
    expected = {
        "a": {"sender": amount, "b": -amount},
        "b": {"a": amount, "c": -amount},
        "c": {"b": amount, "receiver": -amount},
    }
    agree = all(all(books[n].get(k) == v for k, v in expected[n].items()) for n in "abc")
    print("every hop's books agree with the Fulfills the sender got" if agree else "BOOKS DIFFER")


if __name__ == "__main__":
    main()
