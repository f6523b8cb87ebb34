"""The admin API: accounts and balances over HTTP, on a listener of its own (aiohttp).

Every endpoint needs ``Authorization: Bearer $CONNECTOR_ADMIN_TOKEN`` (compared in constant time;
401 otherwise). Without a token the API does not start, and says so in the log. Amounts are
decimal strings (u64 and beyond do not fit a JSON number everyone reads alike). No answer and no
log line carries the token.

- ``GET /accounts``: every account; ``GET /accounts/{id}``: one;
- ``PUT /accounts/{id}/balance`` ``{"balance": "-150"}``: an operator's correction, committed to
  the store before the answer, logged as ``admin_balance_set``;
- ``GET /rates``, ``PUT /rates`` ``{"EUR": "1.25"}``: the prices in use; set some (audited,
  ``admin_rate_set``), from the next packet on;
- ``GET /routes``: the routing table and the route exchange with each peer;
  ``GET /routes/explain?destination=…``: which route a destination takes, and why;
- ``POST /reload``: read the configuration file again and apply it (as ``SIGHUP`` does); the
  answer says what changed, or why nothing did (400);
- ``GET /openapi.json``: this API, described.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from connector.domain.accounts import Account, Accounts
from connector.domain.ledger import Ledger
from connector.domain.ports import LogSink
from connector.domain.rates import RateBook, format_price, parse_price, valid_asset_code
from connector.domain.route_exchange import RouteExchange
from connector.domain.secret import Secret

_AMOUNT = re.compile(r"-?[0-9]{1,40}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _amount(value: int | None) -> str | None:
    return None if value is None else str(value)


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "connector admin API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Account": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "relation": {"type": "string", "enum": ["child", "peer", "parent"]},
                    "asset": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "scale": {"type": "integer"}},
                    },
                    "balance": {"type": "string", "description": "what the peer owes us"},
                    "holds_incoming": {"type": "string"},
                    "holds_outgoing": {"type": "string", "description": "zero or negative"},
                    "minimum": {"type": "string", "nullable": True},
                    "maximum": {"type": "string", "nullable": True},
                    "connected": {"type": "boolean"},
                },
            },
            "Balance": {
                "type": "object",
                "required": ["balance"],
                "properties": {"balance": {"type": "string", "pattern": "^-?[0-9]+$"}},
            },
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/accounts": {
            "get": {
                "summary": "every account",
                "responses": {
                    "200": {
                        "description": "the accounts",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Account"},
                                }
                            }
                        },
                    },
                    "401": {"description": "no or wrong bearer token"},
                },
            }
        },
        "/accounts/{id}": {
            "get": {
                "summary": "one account",
                "parameters": [{"name": "id", "in": "path", "required": True}],
                "responses": {
                    "200": {
                        "description": "the account",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Account"}}
                        },
                    },
                    "401": {"description": "no or wrong bearer token"},
                    "404": {"description": "no such account"},
                },
            }
        },
        "/accounts/{id}/balance": {
            "put": {
                "summary": "set the balance (an operator's correction, audited)",
                "parameters": [{"name": "id", "in": "path", "required": True}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Balance"}}
                    },
                },
                "responses": {
                    "200": {"description": "the account, after the change is committed"},
                    "400": {"description": "not a decimal integer"},
                    "401": {"description": "no or wrong bearer token"},
                    "404": {"description": "no such account"},
                },
            }
        },
        "/rates": {
            "get": {
                "summary": "the prices in use: price, source (config, url, admin), age, stale",
                "responses": {
                    "200": {"description": "the prices"},
                    "401": {"description": "no or wrong bearer token"},
                },
            },
            "put": {
                "summary": "set these prices (others unchanged), from the next packet on; audited",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": {
                                    "description": "a positive decimal, as a string (or a "
                                    "JSON number, read as its decimal text)",
                                    "type": ["string", "number"],
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "the prices, after the change"},
                    "400": {"description": "not a map of asset codes to positive decimal prices"},
                    "401": {"description": "no or wrong bearer token"},
                },
            },
        },
        "/routes": {
            "get": {
                "summary": "the routing table: prefix, next hop, path, source (configured, local, "
                "learned, parent), and the route exchange with each peer",
                "responses": {
                    "200": {"description": "the routes"},
                    "401": {"description": "no or wrong bearer token"},
                },
            }
        },
        "/routes/explain": {
            "get": {
                "summary": "which route a destination takes, and why",
                "parameters": [{"name": "destination", "in": "query", "required": True}],
                "responses": {
                    "200": {"description": "the matching prefix, next hop, reason and candidates"},
                    "400": {"description": "no destination"},
                    "401": {"description": "no or wrong bearer token"},
                },
            }
        },
        "/reload": {
            "post": {
                "summary": "read the configuration file again and apply it, as SIGHUP does",
                "responses": {
                    "200": {
                        "description": "applied: added, removed, changed and reconnected "
                        "peers, and the keys whose change needs a restart (restartRequired)"
                    },
                    "400": {"description": "invalid: problems; the running configuration stays"},
                    "401": {"description": "no or wrong bearer token"},
                    "409": {
                        "description": "started without a configuration file, or starting, "
                        "stopping or waiting for its address: nothing was read"
                    },
                    "500": {"description": "failed while applying (logged): a defect"},
                },
            }
        },
        "/openapi.json": {"get": {"summary": "this document"}},
    },
}


class AdminApi:
    def __init__(
        self,
        ledger: Ledger,
        accounts: Accounts,
        is_connected: Callable[[str], bool],
        known: Callable[[], list[str]],
        token: Secret,
        log: LogSink,
        host: str = "127.0.0.1",
        port: int = 7780,
        routing: RouteExchange | None = None,
        rates: RateBook | None = None,
    ) -> None:
        self._routing = routing
        self._rates = rates
        self._ledger = ledger
        self._accounts = accounts
        self._is_connected = is_connected
        self._known = known
        self._token = token
        self._log = log
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        #: ``POST /reload`` (set once the reloader exists: it is built around this node).
        self.reload: Callable[[str], Awaitable[dict[str, Any]]] | None = None

    @property
    def address(self) -> str:
        if self._site is None or self._runner is None or not self._runner.addresses:
            return f"{self._host}:{self._port}"
        host, port = self._runner.addresses[0][:2]
        return f"{host}:{port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._authorize], client_max_size=4096)
        app.router.add_get("/accounts", self._list)
        app.router.add_get("/accounts/{id}", self._get)
        app.router.add_put("/accounts/{id}/balance", self._set_balance)
        app.router.add_get("/rates", self._get_rates)
        app.router.add_put("/rates", self._put_rates)
        app.router.add_get("/routes", self._routes)
        app.router.add_get("/routes/explain", self._explain)
        app.router.add_post("/reload", self._reload)
        app.router.add_get("/openapi.json", self._openapi)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port)
        await self._site.start()
        self._log.info("admin_api_started", address=self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._token.matches(Secret(presented.encode())):
            return web.json_response(
                {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    def _account(self, request: web.Request) -> Account:
        account_id = request.match_info["id"]
        account = self._accounts.configured.get(account_id)
        if account is None and account_id in self._known():
            account = self._accounts.get(account_id)
        if account is None:
            raise web.HTTPNotFound(
                text='{"error": "no such account"}', content_type="application/json"
            )
        return account

    def _describe(self, account: Account) -> dict[str, Any]:
        position = self._ledger.position(account.id)
        return {
            "id": account.id,
            "relation": account.relation.value,
            "asset": {"code": account.asset.code, "scale": account.asset.scale},
            "balance": str(position.balance),
            "holds_incoming": str(position.incoming),
            "holds_outgoing": str(-position.outgoing),
            "minimum": _amount(account.balance_minimum),
            "maximum": _amount(account.balance_maximum),
            "connected": self._is_connected(account.id),
        }

    async def _list(self, request: web.Request) -> web.Response:
        ids = sorted(set(self._accounts.configured) | set(self._known()))
        accounts = [a for i in ids if (a := self._accounts.get(i)) is not None]
        return web.json_response([self._describe(a) for a in accounts])

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._describe(self._account(request)))

    async def _set_balance(self, request: web.Request) -> web.Response:
        account = self._account(request)
        try:
            body = await request.json()
            text = body["balance"]
            if not isinstance(text, str) or not _AMOUNT.fullmatch(text):
                raise ValueError("balance")
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": 'expected {"balance": "<decimal integer>"}'}, status=400
            )
        balance = int(text)
        before = self._ledger.position(account.id).balance
        pending = self._ledger.set_balance(account.id, balance)
        if pending is not None:
            await pending
        self._log.warning(
            "admin_balance_set",
            peerId=account.id,
            before=str(before),
            after=str(balance),
            remoteAddress=request.remote,
        )
        return web.json_response(self._describe(account))

    def _book(self) -> RateBook:
        if self._rates is None:
            raise web.HTTPNotFound(text='{"error": "no rates"}', content_type="application/json")
        return self._rates

    def _describe_rates(self) -> dict[str, Any]:
        book = self._book()
        now = book.now()
        return {
            "spread": format_price(book.spread) if book.spread else "0",
            "maxAgeSeconds": book.max_age,
            "prices": {
                code: {
                    "price": format_price(price.value),
                    "source": price.source,
                    "ageSeconds": round(now - price.set_at, 3),
                    "stale": book.is_stale(price, now),
                }
                for code, price in sorted(book.prices().items())
            },
        }

    async def _get_rates(self, request: web.Request) -> web.Response:
        return web.json_response(self._describe_rates())

    async def _put_rates(self, request: web.Request) -> web.Response:
        book = self._book()
        try:
            # Numbers as their decimal text: a price is exact, never a float.
            body = json.loads(await request.read(), parse_float=str, parse_int=str)
            if not isinstance(body, dict) or not body:
                raise ValueError("expected a JSON object of asset codes to prices")
            prices = {}
            for code, text in body.items():
                if not valid_asset_code(code):
                    raise ValueError(f"asset code {str(code)[:20]!r}: 1-16 of A-Z a-z 0-9 . _ -")
                if not isinstance(text, str):
                    raise ValueError(f"price of {code} must be a decimal string or number")
                prices[code] = parse_price(text)
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            message = str(exc)[:200] if isinstance(exc, ValueError) else "not a JSON object"
            return web.json_response({"error": message}, status=400)
        before = book.prices()
        book.set_prices(prices, "admin")
        for code, value in sorted(prices.items()):
            old = before.get(code)
            self._log.warning(
                "admin_rate_set",
                asset=code,
                before=format_price(old.value) if old else None,
                after=format_price(value),
                remoteAddress=request.remote,
            )
        return web.json_response(self._describe_rates())

    async def _reload(self, request: web.Request) -> web.Response:
        if self.reload is None:
            return web.json_response({"error": "reload is not available"}, status=409)
        answer = await self.reload(f"admin {request.remote}")
        status = {"reloaded": 200, "unavailable": 409, "failed": 500}.get(answer["status"], 400)
        return web.json_response(answer, status=status)

    def _exchange(self) -> RouteExchange:
        if self._routing is None:
            raise web.HTTPNotFound(
                text='{"error": "no route exchange"}', content_type="application/json"
            )
        return self._routing

    async def _routes(self, request: web.Request) -> web.Response:
        exchange = self._exchange()
        return web.json_response(
            {
                "tableId": exchange.table_id.hex(),
                "epoch": exchange.epoch,
                "routes": [
                    {
                        "prefix": e.prefix,
                        "nextHop": e.next_hop or None,
                        "path": list(e.path),
                        "source": e.source,
                    }
                    for e in exchange.best_routes()
                ],
                "peers": exchange.peers_status(),
            }
        )

    async def _explain(self, request: web.Request) -> web.Response:
        destination = request.query.get("destination", "")
        if not destination or len(destination) > 1023 or not destination.isascii():
            return web.json_response({"error": "expected ?destination=<ILP address>"}, status=400)
        return web.json_response(self._exchange().explain(destination))

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)
