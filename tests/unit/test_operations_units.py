"""Metrics labels stay bounded; --check-config reports what it finds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from connector.app.check_config import check
from connector.app.metrics import Metrics, auth_reason_label, reject_code_label

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "connector.yaml"


def test_unknown_reject_codes_and_auth_reasons_fold_into_fixed_labels() -> None:
    assert reject_code_label("F02") == "F02"
    assert reject_code_label("zz!") == "other"
    assert reject_code_label("F09") == "other"  # interledger-rs only: not standard
    assert auth_reason_label("invalid auth_token") == "invalid_token"
    assert auth_reason_label("first frame must be an auth MESSAGE: anything") == "malformed"


def test_packet_metrics_count_exactly() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.packet("alice", 10, None, 0.001)
    metrics.packet("alice", 5, "zz!", 0.002)
    text = metrics.render().decode()
    assert 'connector_packets_total{code="",outcome="fulfilled",peer="alice"} 3.0' in text
    assert 'connector_packets_total{code="other",outcome="rejected",peer="alice"} 1.0' in text
    assert 'connector_prepare_amount_total{peer="alice"} 35.0' in text
    assert "_created" not in text


def test_check_config_names_a_missing_secret() -> None:
    code, lines = check(EXAMPLE, {"BTP_PEER_ALICE_SECRET": "a"})
    assert code != 0
    assert "error: peer 'bob': BTP_PEER_BOB_SECRET is not set" in "\n".join(lines)
    assert "hunter" not in "\n".join(lines)
    code, lines = check(EXAMPLE, {"BTP_PEER_ALICE_SECRET": "hunter2", "BTP_PEER_BOB_SECRET": "b"})
    assert code == 0
    assert lines[-1] == "result: OK"
    assert "hunter2" not in "\n".join(lines)  # it says set or MISSING, never the value


def test_check_config_names_a_route_to_an_unknown_peer(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("peers: [{id: a, relation: peer}]\nroutes: [{prefix: test.x, peer: ghost}]\n")
    code, lines = check(path, {"BTP_PEER_A_SECRET": "x"})
    assert code != 0
    assert "routes.0.peer: 'ghost' is not a configured peer" in "\n".join(lines)


def test_check_config_command_exits_0_or_2(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "BTP_PEER_ALICE_SECRET": "a"}
    bad = subprocess.run(
        [sys.executable, "-m", "connector", "--check-config", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2  # as start-up exits with this configuration
    assert "MISSING" in bad.stdout
    good = subprocess.run(
        [sys.executable, "-m", "connector", "--check-config", str(EXAMPLE)],
        env={**env, "BTP_PEER_BOB_SECRET": "b"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert good.returncode == 0, good.stdout + good.stderr


def test_balances_and_refusals_are_exported_from_the_ledger() -> None:
    from connector.domain.accounts import Account, Relation
    from connector.domain.ledger import Ledger

    ledger = Ledger()
    alice = Account.of("alice", Relation.CHILD, balance_maximum=500)
    assert ledger.hold_incoming(alice, 400)
    ledger.settle_incoming("alice", 400, fulfilled=True)
    assert not ledger.hold_incoming(alice, 101)
    text = Metrics(ledger).render().decode()
    assert 'connector_balance{peer="alice"} 400.0' in text
    assert 'connector_balance_refusals_total{direction="incoming",peer="alice"} 1.0' in text
    assert 'connector_balance_refusals_total{direction="outgoing",peer="alice"} 0.0' in text


def test_check_config_reports_a_store_it_cannot_use(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("store: {url: 'sqlite:////nonexistent-dir/b.sqlite3'}\n")
    code, lines = check(path, {})
    assert code != 0
    assert "cannot create it in /nonexistent-dir" in "\n".join(lines)
    code, lines = check(path, {"CONNECTOR_STORE_URL": f"sqlite:///{tmp_path / 'ok.sqlite3'}"})
    assert code == 0, lines
    assert f"store: sqlite:///{tmp_path / 'ok.sqlite3'} (from CONNECTOR_STORE_URL)" in lines
    assert not (tmp_path / "ok.sqlite3").exists()  # checking creates nothing
    corrupt = tmp_path / "bad.sqlite3"
    corrupt.write_bytes(b"not a database at all, just bytes" * 10)
    code, lines = check(path, {"CONNECTOR_STORE_URL": f"sqlite:///{corrupt}"})
    assert code != 0
    assert "bad.sqlite3" in "\n".join(lines)


def test_check_config_shows_assets_and_rates_and_warns_of_a_missing_price(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "rates: {prices: {USD: '1'}, spread: '0.002'}\n"
        "peers:\n"
        "  - {id: alice, relation: child, asset: {code: EUR, scale: 2}}\n"
        "  - {id: bob, relation: child}\n"
    )
    code, lines = check(path, {"BTP_PEER_ALICE_SECRET": "a", "BTP_PEER_BOB_SECRET": "b"})
    text = "\n".join(lines)
    assert code == 0, text  # a missing price is a warning: it can be set at runtime
    assert "asset EUR/2" in text
    assert "rates: static (file), prices USD, spread 0.002" in text
    assert "warning: no price for EUR" in text
