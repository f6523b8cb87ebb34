"""The admin API on a real listener (127.0.0.1): bearer auth, accounts, the audited balance
correction, the OpenAPI document; and no token anywhere it could leak."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.app.admin import AdminApi
from connector.app.config import ConnectorConfig
from connector.app.container import Container
from connector.app.settings import Settings, runtime_config
from tests.fakes import RecordingLogSink

TOKEN = "admin-token-7d1f"
CONFIG = {
    "node_id": "adm",
    "ilp_address": "test.adm",
    "admin": {"host": "127.0.0.1", "port": 0},
    "peers": [
        {"id": "alice", "relation": "child", "balance": {"maximum": 1000}},
        {"id": "bob", "relation": "peer", "balance": {"minimum": -500}},
    ],
}


class Admin:
    def __init__(self, api: AdminApi, log: RecordingLogSink) -> None:
        self.api = api
        self.log = log
        self.base = f"http://{api.address}"

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = TOKEN,
        body: Any = None,
        raw: str | None = None,
    ) -> tuple[int, Any, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        sent: dict[str, Any] = {"json": body} if raw is None else {"data": raw.encode()}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, headers=headers, **sent) as response,
        ):
            text = await response.text()
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
            return response.status, data, text


@pytest.fixture
async def admin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Admin]:
    monkeypatch.setenv("CONNECTOR_ADMIN_TOKEN", TOKEN)
    container = Container()
    settings = Settings(transport="memory", store_url=f"sqlite:///{tmp_path / 'b.sqlite3'}")
    container.config.from_dict(runtime_config(settings, ConnectorConfig.model_validate(CONFIG)))
    log = RecordingLogSink(nodeId="adm")
    container.log.override(log)
    api = container.admin()
    assert api is not None
    await api.start()
    try:
        yield Admin(api, log)
    finally:
        await api.stop()
        close = getattr(container.ledger().committer, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
async def test_every_endpoint_needs_the_bearer_token(admin: Admin, token: str | None) -> None:
    for method, path in [("GET", "/accounts"), ("GET", "/accounts/alice"),
                         ("PUT", "/accounts/alice/balance"), ("GET", "/openapi.json")]:  # fmt: skip
        status, body, _ = await admin.call(method, path, token, {"balance": "1"})
        assert (status, body) == (401, {"error": "unauthorized"})


async def test_accounts_show_balances_limits_and_holds_as_decimal_strings(admin: Admin) -> None:
    status, body, _ = await admin.call("GET", "/accounts")
    assert status == 200
    assert [a["id"] for a in body] == ["alice", "bob"]
    alice = body[0]
    assert alice == {
        "id": "alice",
        "relation": "child",
        "asset": {"code": "USD", "scale": 9},
        "balance": "0",
        "holds_incoming": "0",
        "holds_outgoing": "0",
        "minimum": None,
        "maximum": "1000",
        "connected": False,
    }
    status, body, _ = await admin.call("GET", "/accounts/nobody")
    assert status == 404


async def test_a_balance_correction_is_committed_audited_and_shown(admin: Admin) -> None:
    status, body, _ = await admin.call("PUT", "/accounts/bob/balance", body={"balance": "-150"})
    assert (status, body["balance"]) == (200, "-150")
    (audit,) = admin.log.events("admin_balance_set")
    assert (audit["peerId"], audit["before"], audit["after"]) == ("bob", "0", "-150")
    _, body, _ = await admin.call("GET", "/accounts/bob")
    assert body["balance"] == "-150"
    for bad in ({"balance": 5}, {"balance": "1.5"}, {"balance": "abc"}, {}, "nope"):
        status, _, _ = await admin.call("PUT", "/accounts/bob/balance", body=bad)
        assert status == 400
    await asyncio.sleep(0)


async def test_the_openapi_document_describes_the_api(admin: Admin) -> None:
    status, body, _ = await admin.call("GET", "/openapi.json")
    assert status == 200
    assert body["openapi"].startswith("3.")
    assert set(body["paths"]) == {
        "/accounts",
        "/accounts/{id}",
        "/accounts/{id}/balance",
        "/rates",
        "/routes",
        "/routes/explain",
        "/reload",
        "/openapi.json",
    }


async def test_routes_and_why_a_destination_takes_one(admin: Admin) -> None:
    status, body, _ = await admin.call("GET", "/routes")
    assert status == 200
    routes = {r["prefix"]: r for r in body["routes"]}
    assert (routes["test.adm"]["source"], routes["test.adm"]["nextHop"]) == ("local", None)
    assert (routes["test.adm.alice"]["nextHop"], routes["test.adm.alice"]["source"]) == (
        "alice",
        "local",
    )
    status, body, _ = await admin.call("GET", "/routes/explain?destination=test.adm.alice.x")
    assert status == 200
    assert (body["prefix"], body["nextHop"]) == ("test.adm.alice", "alice")
    assert "a child of this node" in body["reason"]
    status, body, _ = await admin.call("GET", "/routes/explain?destination=test.nowhere.x")
    assert status == 200
    assert (body["prefix"], body["nextHop"]) == (None, None)
    status, _, _ = await admin.call("GET", "/routes/explain")
    assert status == 400


async def test_no_token_in_any_answer_or_log_line(admin: Admin) -> None:
    texts = []
    for token in (TOKEN, "presented-wrong-token-XYZ"):
        for path in ("/accounts", "/accounts/alice", "/openapi.json", "/nothing"):
            texts.append((await admin.call("GET", path, token))[2])
    await admin.call("PUT", "/accounts/alice/balance", body={"balance": "7"})
    everything = "\n".join(texts) + repr(admin.log.records)
    assert TOKEN not in everything
    assert "presented-wrong-token-XYZ" not in everything


async def test_without_a_token_the_admin_api_does_not_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CONNECTOR_ADMIN_TOKEN", raising=False)
    container = Container()
    container.config.from_dict(
        runtime_config(
            Settings(transport="memory", store_url="memory://"),
            ConnectorConfig.model_validate(CONFIG),
        )
    )
    assert container.admin() is None


@pytest.mark.parametrize(
    "body",
    [
        '{"EUR": "-1"}',
        '{"E R": "1"}',
        "[]",
        "{}",
        '{"EUR": null}',
        "[" * 2000,
        '{"EUR": "1e-9999999"}',
    ],
)
async def test_put_rates_refuses_what_is_not_a_map_of_codes_to_prices(
    admin: Admin, body: str
) -> None:
    status, answer, _ = await admin.call("PUT", "/rates", raw=body)
    assert status == 400, answer


async def test_put_rates_sets_prices_and_is_audited(admin: Admin) -> None:
    status, body, _ = await admin.call("PUT", "/rates", raw='{"EUR": "1.25", "JPY": 0.0067}')
    assert status == 200
    assert body["prices"]["EUR"]["price"] == "1.25"
    assert body["prices"]["JPY"]["price"] == "0.0067"  # a JSON number, read exactly
    assert [r["asset"] for r in admin.log.records if r["event"] == "admin_rate_set"] == [
        "EUR",
        "JPY",
    ]


async def test_post_reload_answers_with_what_the_reload_did(admin: Admin) -> None:
    status, body, _ = await admin.call("POST", "/reload")
    assert status == 409  # no reloader (a node being built): nothing to reload with
    for answer, code in [
        ({"status": "reloaded", "added": []}, 200),
        ({"status": "invalid", "problems": ["c.yaml: colour: unknown key"]}, 400),
        ({"status": "unavailable", "problems": ["no configuration file"]}, 409),
        ({"status": "failed", "problems": ["KeyError: 'x'"]}, 500),
    ]:

        async def reload(trigger: str, answer: dict[str, Any] = answer) -> dict[str, Any]:
            assert trigger.startswith("admin 127.0.0.1")
            return answer

        admin.api.reload = reload
        status, body, _ = await admin.call("POST", "/reload")
        assert (status, body) == (code, answer)
