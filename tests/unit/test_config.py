"""The configuration file: the shipped example loads; every mistake names file, field, problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.app.config import ConnectorConfig, load_config
from connector.app.container import build_accounts
from connector.app.settings import Settings, effective_file, runtime_config
from connector.domain.accounts import Account, Accounts, Asset, Relation
from connector.domain.errors import ConfigurationError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "connector.yaml"


def test_the_shipped_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.node_id == "connector-a"
    assert [p.id for p in config.peers] == ["alice", "bob"]
    assert config.peers[1].max_packet_amount == 1_000_000


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("node_id: a\nilp_adress: test.a\n", "ilp_adress: unknown key"),
        ("ilp_address: nope\n", "ilp_address: is not a valid ILP address"),
        (
            "btp_server: {port: 99999}\n",
            "btp_server.port: must be less than or equal to 65535",
        ),
        (
            "peers: [{id: bob, relation: friend}]\n",
            "peers.0.relation: must be 'child', 'peer' or 'parent'",
        ),
        ("peers: [{id: bob, relation: peer, url: 'http://x'}]\n", "peers.0.url: must be a ws://"),
        (
            "peers: [{id: bob, relation: peer, url: 'ws://u:p@x'}]\n",
            "peers.0.url: must not carry credentials",
        ),
        ("peers: [{id: 'b b', relation: peer}]\n", "peers.0.id: must be 1-64 characters"),
        ("peers: [{id: b, relation: peer}, {id: b, relation: child}]\n", "duplicate id b"),
        (
            "routes: [{prefix: test.x, peer: nobody}]\n",
            "routes.0.peer: 'nobody' is not a configured peer",
        ),
        (
            "routes: [{prefix: 'te st', peer: x}]\n",
            "routes.0.prefix: must be an ILP address prefix",
        ),
        ("peers: [{id: b, relation: peer, max_packet_amount: -1}]\n", "peers.0.max_packet_amount"),
        ("btp_server: {tls: {cert_file: c.pem}}\n", "btp_server.tls.key_file: Field required"),
        ("btp_server: {tls: {key_file: k.pem}}\n", "btp_server.tls.cert_file: Field required"),
        (
            "btp_server: {trusted_proxies: [10.0.0.0/8, 'nope']}\n",
            "btp_server.trusted_proxies: 'nope' is not an IP network",
        ),
        (
            "btp_server: {trusted_proxies: [10.1.2.3/8]}\n",
            "has host bits set (did you mean 10.0.0.0/8?)",
        ),
        (
            "peers: [{id: b, relation: peer, url: 'ws://x', tls_ca_file: ca.pem}]\n",
            "peers.0: tls_ca_file needs a wss:// url",
        ),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("key: [unclosed\n", "not valid YAML"),
    ],
)
def test_mistakes_name_the_file_the_field_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    file = load_config(path)
    assert file.ilp_address is None  # not configured: the effective default is decided later
    assert effective_file(Settings(), file).ilp_address == "test.connector"


def test_no_address_and_a_parent_means_asking_the_first_parent_over_ildcp() -> None:
    peers = [
        {"id": "kid", "relation": "child"},
        {"id": "up", "relation": "parent", "url": "ws://up.example"},
        {"id": "up2", "relation": "parent"},
    ]
    file = ConnectorConfig.model_validate({"peers": peers})
    values = runtime_config(Settings(), file)
    assert (values["ilp_address"], values["ildcp_parent"]) == ("", "up")
    assert effective_file(Settings(), file).ilp_address is None
    # an address configured always wins, in the file or in the environment
    configured = ConnectorConfig.model_validate({"ilp_address": "test.me", "peers": peers})
    values = runtime_config(Settings(), configured)
    assert (values["ilp_address"], values["ildcp_parent"]) == ("test.me", None)
    env = Settings.from_environment({"CONNECTOR_ILP_ADDRESS": "test.env"})
    values = runtime_config(env, file)
    assert (values["ilp_address"], values["ildcp_parent"]) == ("test.env", None)
    # no parent: the default address, as before
    alone = ConnectorConfig.model_validate({"peers": peers[:1]})
    values = runtime_config(Settings(), alone)
    assert (values["ilp_address"], values["ildcp_parent"]) == ("test.connector", None)
    assert runtime_config(Settings(), None)["ilp_address"] == "test.connector"


def test_environment_variables_that_are_set_override_the_file() -> None:
    file = load_config(EXAMPLE)
    values = runtime_config(Settings.from_environment({}), file)
    assert (values["btp_server_port"], values["node_id"], values["ilp_address"]) == (
        3000,
        "connector-a",
        "test.a",
    )
    values = runtime_config(Settings.from_environment({"BTP_SERVER_PORT": "4555"}), file)
    assert values["btp_server_port"] == 4555
    assert values["open_children"] is False
    assert runtime_config(Settings(), None)["open_children"] is True


def test_accounts_are_parsed_once_and_imply_child_parent_and_static_routes() -> None:
    accounts = build_accounts(
        "test.me",
        [
            {"id": "kid", "relation": "child"},
            {"id": "up", "relation": "parent"},
            {"id": "side", "relation": "peer", "max_packet_amount": 5},
        ],
        [{"prefix": "test.side", "peer": "side"}],
        Asset("EUR", 2),
        open_children=False,
    )
    routes = accounts.routing_table()
    assert routes.resolve("test.me.kid.x") == "kid"
    assert routes.resolve("test.side.y") == "side"
    assert routes.resolve("g.anything") == "up"
    side = accounts.get("side")
    assert side == Account(
        "side", Relation.PEER, Asset("EUR", 2), 5, send_routes=True, receive_routes=True
    )
    kid = accounts.get("kid")
    assert kid is not None
    assert (kid.send_routes, kid.receive_routes) == (False, False)  # children exchange no routes
    assert accounts.get("stranger") is None
    assert not accounts.is_known("stranger")


def test_open_accounts_treat_any_peer_as_a_child() -> None:
    accounts = Accounts("test.me", [], open_children=True)
    account = accounts.get("anyone")
    assert account is not None
    assert account.relation is Relation.CHILD
    assert accounts.is_known("anyone")
    assert accounts.routing_table(["anyone"]).resolve("test.me.anyone.x") == "anyone"


@pytest.mark.parametrize(
    ("balance", "message"),
    [
        ("{maximum: -1}", "peers.0.balance.maximum"),
        ("{minimum: 10, maximum: 5}", "balance.minimum must not be above balance.maximum"),
        ("{maximum: 1.5}", "peers.0.balance.maximum"),
    ],
)
def test_bad_balance_limits_are_refused(tmp_path: Path, balance: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"peers: [{{id: a, relation: child, balance: {balance}}}]\n")
    with pytest.raises(ConfigurationError, match=message):
        load_config(path)


def test_the_default_store_is_a_file_in_the_working_directory_and_the_environment_beats_it(
    tmp_path: Path,
) -> None:
    assert ConnectorConfig().store.url == "sqlite:///connector.sqlite3"
    path = tmp_path / "c.yaml"
    path.write_text("store: {url: 'sqlite:///x.sqlite3'}\n")
    file = load_config(path)
    assert runtime_config(Settings(store_url=None), file)["store_url"] == "sqlite:///x.sqlite3"
    assert runtime_config(Settings(store_url="memory://"), file)["store_url"] == "memory://"
    path.write_text("store: {url: 'mysql://x'}\n")
    with pytest.raises(ConfigurationError, match=r"store\.url"):
        load_config(path)


@pytest.mark.parametrize(
    ("rates", "problem"),
    [
        ("{spread: '1'}", "spread"),
        ("{spread: 'lots'}", "spread"),
        ("{prices: {EUR: '-1'}}", "EUR"),
        ("{prices: {EUR: 'abc'}}", "EUR"),
        ("{backend: url}", "rates.url is needed"),
        ("{backend: url, url: 'ftp://x'}", "http"),
        ("{backend: other}", "backend"),
        ("{spread: 'Infinity'}", "spread"),
        ("{spread: '1e-3000000'}", "spread"),
        ("{prices: {'E R': '1'}}", "asset code"),
        ("{backend: url, url: 'https://u:p@x/r'}", "credentials"),
    ],
)
def test_bad_rates_are_refused_naming_the_field(tmp_path: Path, rates: str, problem: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"rates: {rates}\n")
    with pytest.raises(ConfigurationError, match=problem):
        load_config(path)


def test_a_peer_has_its_own_asset(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("peers: [{id: a, relation: child, asset: {code: EUR, scale: 2}}]\n")
    (peer,) = load_config(path).peers
    assert peer.asset is not None
    assert (peer.asset.code, peer.asset.scale) == ("EUR", 2)


def test_two_peers_whose_secret_variables_collide_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("peers: [{id: alice, relation: child}, {id: Alice, relation: child}]\n")
    with pytest.raises(ConfigurationError, match="one secret variable"):
        load_config(path)
    path.write_text("peers: [{id: a-b, relation: child}, {id: a_b, relation: child}]\n")
    with pytest.raises(ConfigurationError, match="one secret variable"):
        load_config(path)


def test_open_mode_knows_each_peer_by_one_spelling_only() -> None:
    accounts = Accounts("test.me", [], open_children=True)
    assert accounts.is_known("alice")
    assert accounts.is_known("connector-b")
    for variant in ("Alice", "ALICE", "connector_b", "connector~b"):
        assert not accounts.is_known(variant), variant
