"""One hop, ours against the reference: sender -> connector -> receiver, BTP on both sides.

For each connector (this one, and ilp-connector@23.0.2 with one-to-one rates, no spread and its
rate-limit middleware off) the same harness (bench/harness.js: the real ilp-plugin-btp as sender
and receiver, every Fulfill checked against its condition) keeps 1, 10 and 100 Prepares in
flight. The connector is pinned to core 0 and the harness to core 1. Reported per level:
packets/s, p50 and p99 latency, connector CPU time per packet (from /proc), the harness's own
CPU (near 100% of its core, the figure measures the harness, not the connector) and the
connector's peak RSS. Rounds alternate ours and the reference; ratios are medians over rounds.
Needs ``scripts/setup --dev`` (npm packages) and Linux. Run:
``.venv/bin/python bench/forwarding_bench.py [--seconds 5] [--rounds 2]
[--stores memory,sqlite,postgresql]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT / "interop"
TICKS = os.sysconf("SC_CLK_TCK")
REFERENCE = "ilp-connector 23.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pinned(core: int) -> list[str]:
    return (
        ["taskset", "-c", str(core)]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else []
    )


class Stores:
    """Where our balances live in a measurement: a store URL per kind, a fresh one each time
    (a throwaway PostgreSQL server on loopback, started on first use)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cluster: Any = None
        self.count = 0

    def url(self, kind: str) -> str:
        self.count += 1
        if kind == "memory":
            return "memory://"
        if kind == "sqlite":
            return f"sqlite:///{self.tmp / f'bench{self.count}.sqlite3'}"
        if self.cluster is None:
            sys.path.insert(0, str(ROOT))
            from tests.postgres_cluster import PostgresCluster, server_binaries

            binaries = server_binaries()
            if binaries is None:
                raise SystemExit("--stores postgresql needs PostgreSQL's initdb and pg_ctl")
            self.cluster = PostgresCluster(binaries).start()
        return str(self.cluster.create_database(f"bench{self.count}"))

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


def start_ours(tmp: Path, store_url: str) -> tuple[subprocess.Popen[bytes], str, str, str]:
    port = free_port()
    config = tmp / "ours.yaml"
    # Limits far above what a run sends, so that every packet takes the limit checks (and, on a
    # shared store, the credit leases) without ever being refused.
    config.write_text(
        "node_id: bench\nilp_address: test.bench\n"
        f"btp_server: {{host: 127.0.0.1, port: {port}}}\n"
        "peers:\n"
        "  - {id: sender, relation: child, balance: {maximum: 1000000000000000000}}\n"
        "  - {id: receiver, relation: child, balance: {minimum: -1000000000000000000}}\n"
    )
    env = {
        **os.environ,
        "BTP_PEER_SENDER_SECRET": "s",
        "BTP_PEER_RECEIVER_SECRET": "r",
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        "CONNECTOR_STORE_URL": store_url,
    }
    proc = subprocess.Popen(
        [*pinned(0), sys.executable, "-m", "connector", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return (
        proc,
        f"btp+ws://sender:s@127.0.0.1:{port}",
        f"btp+ws://receiver:r@127.0.0.1:{port}",
        "test.bench.receiver.x",
    )


def start_reference(tmp: Path, store_url: str) -> tuple[subprocess.Popen[bytes], str, str, str]:
    sender_port, receiver_port = free_port(), free_port()
    account = {"relation": "child", "plugin": "ilp-plugin-btp", "assetCode": "USD", "assetScale": 9}
    env = {
        **os.environ,
        "CONNECTOR_ILP_ADDRESS": "test.ref",
        "CONNECTOR_BACKEND": "one-to-one",
        "CONNECTOR_SPREAD": "0",
        "CONNECTOR_STORE": "memory",
        "CONNECTOR_DISABLE_MIDDLEWARE": json.dumps(["rateLimit"]),
        "CONNECTOR_INITIAL_CONNECT_TIMEOUT": "60000",
        "CONNECTOR_ACCOUNTS": json.dumps(
            {
                "sender": {
                    **account,
                    "options": {"listener": {"port": sender_port, "secret": "s"}},
                },
                "receiver": {
                    **account,
                    "options": {"listener": {"port": receiver_port, "secret": "r"}},
                },
            }
        ),
    }
    script = INTEROP / "node_modules" / "ilp-connector" / "dist" / "index.js"
    proc = subprocess.Popen(
        [*pinned(0), "node", str(script)],
        env=env,
        cwd=INTEROP,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(sender_port, proc)
    wait_port(receiver_port, proc)
    return (
        proc,
        f"btp+ws://:s@127.0.0.1:{sender_port}",
        f"btp+ws://:r@127.0.0.1:{receiver_port}",
        "test.ref.receiver.x",
    )


def measure(
    name: str, start: Any, args: argparse.Namespace, tmp: Path, round_no: int, store_url: str
) -> list[dict[str, Any]]:
    proc, sender, receiver, destination = start(tmp, store_url)
    rows = []
    try:
        harness = subprocess.Popen(
            [
                *pinned(1),
                "node",
                str(ROOT / "bench" / "harness.js"),
                "--sender",
                sender,
                "--receiver",
                receiver,
                "--destination",
                destination,
                "--levels",
                args.levels,
                "--seconds",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert harness.stdout is not None
        cpu_before = harness_before = 0.0
        for line in harness.stdout:
            event = json.loads(line)
            if event["event"] == "measuring":
                cpu_before = cpu_seconds(proc.pid)
                harness_before = cpu_seconds(harness.pid)
            elif event["event"] == "level":
                cpu = cpu_seconds(proc.pid) - cpu_before
                harness_cpu = cpu_seconds(harness.pid) - harness_before
                packets = max(event["fulfilled"], 1)
                rows.append(
                    {
                        "connector": name,
                        "round": round_no,
                        **event,
                        "cpuPerPacketUs": cpu / packets * 1e6,
                        "harnessCpuShare": harness_cpu / event["seconds"],
                        "peakRssMiB": peak_rss_mib(proc.pid),
                    }
                )
            elif event["event"] == "done":
                break
        harness.wait(timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--levels", default="1,10,100")
    parser.add_argument("--rounds", type=int, default=2, help="ours, then the reference, N times")
    parser.add_argument(
        "--stores",
        default="memory",
        help="where our balances live, one measurement each per round: memory, sqlite, "
        "postgresql (a throwaway server on loopback, not pinned)",
    )
    args = parser.parse_args()
    stores_asked = args.stores.split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = Stores(Path(tmp))
        try:
            for round_no in range(args.rounds):
                # Alternating, so drift on a shared machine hits every connector alike.
                order = [(ours(kind), start_ours, kind) for kind in stores_asked]
                order.append((REFERENCE, start_reference, "memory"))
                for name, start, kind in order if round_no % 2 == 0 else order[::-1]:
                    rows += measure(name, start, args, Path(tmp), round_no, stores.url(kind))
        finally:
            stores.close()
    print(
        f"one hop, BTP both sides, connector on core 0, harness on core 1, {args.seconds:g} s "
        f"per level after {args.warmup:g} s of warm-up, {args.rounds} alternating rounds; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}\n"
    )
    print(
        "| connector | round | in flight | packets/s | p50 ms | p99 ms | CPU µs/packet "
        "| harness CPU | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['connector']} | {row['round'] + 1} | {row['inFlight']} | "
            f"{row['packetsPerSecond']:,.0f} | {row['p50']:.2f} | {row['p99']:.2f} | "
            f"{row['cpuPerPacketUs']:.0f} | {row['harnessCpuShare']:.0%} | "
            f"{row['peakRssMiB']:.0f} |"
        )
    print(
        "\n| store, in flight | throughput ours/ref | p99 ours/ref | CPU/packet ours/ref "
        "| peak RSS ours/ref |  (medians over rounds of the per-round ratios)"
    )
    print("|---|---|---|---|---|")
    for kind in stores_asked:
        for level in [int(x) for x in args.levels.split(",")]:
            compare(rows, ours(kind), REFERENCE, level, args.rounds, f"{kind}, {level}")
    if "memory" in stores_asked and len(stores_asked) > 1:
        print("\n| store, in flight | throughput / in memory | p99 / in memory "
              "| CPU/packet / in memory | peak RSS / in memory |")  # fmt: skip
        print("|---|---|---|---|---|")
        for kind in stores_asked:
            if kind != "memory":
                for level in [int(x) for x in args.levels.split(",")]:
                    compare(rows, ours(kind), ours("memory"), level, args.rounds,
                            f"{kind}, {level}")  # fmt: skip


def ours(kind: str) -> str:
    return "ours" if kind == "memory" else f"ours ({kind})"


def compare(
    rows: list[dict[str, Any]], a: str, b: str, level: int, rounds: int, label: str
) -> None:
    """One row of ratios a/b: medians over rounds of the per-round ratios."""
    ratios: dict[str, list[float]] = {"tp": [], "p99": [], "cpu": [], "rss": []}
    for round_no in range(rounds):
        (o,) = [r for r in rows if r["connector"] == a and r["round"] == round_no
                and r["inFlight"] == level]  # fmt: skip
        (r,) = [r for r in rows if r["connector"] == b and r["round"] == round_no
                and r["inFlight"] == level]  # fmt: skip
        ratios["tp"].append(o["packetsPerSecond"] / r["packetsPerSecond"])
        ratios["p99"].append(o["p99"] / r["p99"])
        ratios["cpu"].append(o["cpuPerPacketUs"] / r["cpuPerPacketUs"])
        ratios["rss"].append(o["peakRssMiB"] / r["peakRssMiB"])
    print(
        f"| {label} | {median(ratios['tp']):.2f} | {median(ratios['p99']):.2f} | "
        f"{median(ratios['cpu']):.2f} | {median(ratios['rss']):.2f} |"
    )


if __name__ == "__main__":
    main()
