"""The connector's configuration file (YAML), validated by pydantic. The public contract: every
key is documented in the README and ``examples/connector.yaml`` shows them all.

Secrets never live in the file: each peer's secret is ``BTP_PEER_{PEER_ID}_SECRET``. Unknown keys
and bad values stop start-up with ``ConfigurationError`` naming the file, the field and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connector.adapters.proxies import parse_network
from connector.app.store import STORE_URLS, check_store_url
from connector.domain.accounts import canonical_peer_id
from connector.domain.auth import is_valid_peer_id
from connector.domain.errors import ConfigurationError
from connector.domain.ilp.address import is_valid_address
from connector.domain.oer import UINT64_MAX
from connector.domain.rates import parse_decimal, parse_price, valid_asset_code


def valid_ilp_address(value: str | None) -> str | None:
    if value is not None and not is_valid_address(value):
        raise ValueError("is not a valid ILP address (RFC-0015)")
    return value


def valid_store_url(value: str | None) -> str | None:
    """``store.url`` and ``CONNECTOR_STORE_URL`` alike."""
    if value is not None:
        try:
            check_store_url(value)
        except ConfigurationError:
            raise ValueError(STORE_URLS) from None
    return value


def valid_node_id(value: str) -> str:
    if not is_valid_peer_id(value):
        raise ValueError("must be 1-64 characters of A-Z a-z 0-9 _ ~ -")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    """The BTP server's certificate and key (PEM files; paths relative to the working
    directory), and for mutual TLS the CA that must have signed every client's certificate."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class BtpServerConfig(_Strict):
    host: str = "0.0.0.0"  # noqa: S104 - a connector in a container listens on all interfaces
    port: int = Field(3000, ge=0, le=65535)
    #: With it the port serves wss:// (and HTTPS health and metrics).
    tls: TlsConfig | None = None
    #: Reverse proxies whose X-Forwarded-For names the client (README, "Operations").
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            parse_network(cidr)  # its ValueError names the entry
        return value


class AssetConfig(_Strict):
    code: str = Field("USD", pattern=r"^[A-Za-z0-9._-]{1,16}$")
    scale: int = Field(9, ge=0, le=255)


class BalanceConfig(_Strict):
    """What the peer may owe us at most (``maximum``, not below zero) and the lowest its balance
    may go (``minimum``, usually negative: what we may owe it), in its asset's units."""

    minimum: int | None = Field(None, ge=-UINT64_MAX, le=UINT64_MAX)
    maximum: int | None = Field(None, ge=0, le=UINT64_MAX)

    @model_validator(mode="after")
    def _order(self) -> BalanceConfig:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("balance.minimum must not be above balance.maximum")
        return self


class RateLimitConfig(_Strict):
    """Prepares a peer may send us: ``burst`` at once, refilled at ``packets_per_second``
    (whole numbers; ``burst`` defaults to one second's worth)."""

    packets_per_second: int = Field(ge=1, le=1_000_000_000)
    burst: int | None = Field(None, ge=1, le=1_000_000_000)

    @property
    def effective_burst(self) -> int:
        return self.packets_per_second if self.burst is None else self.burst


class PeerRoutingConfig(_Strict):
    """Route exchange with this peer; unset: as its relation says (peer and parent both ways,
    child neither)."""

    send: bool | None = None
    receive: bool | None = None


class RoutingConfig(_Strict):
    #: The heartbeat of route updates; changes go out at once.
    broadcast_interval_ms: int = Field(30_000, ge=1_000, le=3_600_000)


class RatesConfig(_Strict):
    """Exchange rates between peers' assets (README, "Exchange rates"). Prices are decimal
    strings: what one whole unit of each asset is worth in a common unit."""

    backend: Literal["static", "url"] = "static"
    prices: dict[str, str] = {}
    url: str | None = None
    poll_seconds: float = Field(60.0, gt=0, le=86_400)
    max_age_seconds: float | None = Field(None, gt=0, le=30 * 86_400)
    spread: str = "0"

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, str]) -> dict[str, str]:
        for code, price in value.items():
            if not valid_asset_code(code):
                raise ValueError(f"asset code {code!r}: 1-16 of A-Z a-z 0-9 . _ -")
            try:
                parse_price(price)
            except ValueError as exc:
                raise ValueError(f"{code}: {exc}") from None
        return value

    @field_validator("spread")
    @classmethod
    def _spread(cls, value: str) -> str:
        try:
            spread = parse_decimal(value)
        except ValueError:
            raise ValueError("must be a decimal string such as '0.002'") from None
        if not 0 <= spread < 1:
            raise ValueError("must be at least 0 and below 1")
        return value

    @model_validator(mode="after")
    def _source(self) -> RatesConfig:
        if self.backend == "url" and not self.url:
            raise ValueError("rates.url is needed with backend: url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("rates.url must be an http:// or https:// URL")
        if self.url is not None and "@" in self.url.split("/")[2]:
            raise ValueError("rates.url must not carry credentials")
        return self

    @property
    def effective_max_age(self) -> float | None:
        """How long a price from the URL counts: ``max_age_seconds``, or three polls."""
        if self.backend != "url":
            return None
        return self.max_age_seconds or 3 * self.poll_seconds


class PeerConfig(_Strict):
    id: str
    relation: Literal["child", "peer", "parent"]
    #: Its asset (default: the node's): balances, limits and IL-DCP are in its units.
    asset: AssetConfig | None = None
    url: str | None = None
    username: str | None = None
    max_packet_amount: int | None = Field(None, ge=0, le=UINT64_MAX)
    #: Beyond it, this peer's Prepares get T05; unset: the file's top-level ``rate_limit``.
    rate_limit: RateLimitConfig | None = None
    balance: BalanceConfig = BalanceConfig()
    routing: PeerRoutingConfig = PeerRoutingConfig()
    #: The CAs to trust for this peer's wss:// certificate (default: the system's).
    tls_ca_file: Path | None = None

    _id = field_validator("id")(valid_node_id)

    @model_validator(mode="after")
    def _tls(self) -> PeerConfig:
        if self.tls_ca_file is not None and not (self.url or "").removeprefix("btp+").startswith(
            "wss://"
        ):
            raise ValueError("tls_ca_file needs a wss:// url")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.removeprefix("btp+").startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        if "@" in value.split("/")[2]:
            raise ValueError("must not carry credentials: use username and BTP_PEER_{ID}_SECRET")
        try:  # what the dialer will parse, every time: a bad one would fail every dial
            parts = urlsplit(value.removeprefix("btp+"))
            parts.port  # noqa: B018 - raises for a port out of range
        except ValueError as exc:
            raise ValueError(f"is not a valid URL: {exc}") from None
        if not parts.hostname:
            raise ValueError("has no host")
        return value


class RouteConfig(_Strict):
    prefix: str
    peer: str

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not is_valid_address(value):
            raise ValueError("must be an ILP address prefix such as test.bob, or '' for default")
        return value


class ForwardingConfig(_Strict):
    min_message_window_ms: int = Field(1000, ge=0, le=60_000)
    max_hold_time_ms: int = Field(30_000, ge=1, le=3_600_000)


class StoreConfig(_Strict):
    #: The embedded default: a file in the working directory (nothing to install).
    url: str = "sqlite:///connector.sqlite3"
    #: With PostgreSQL, this instance's name among those sharing the database (default: the
    #: host name): unique among running instances; a restart under it releases its holds.
    instance: str | None = Field(None, min_length=1, max_length=128)

    _url = field_validator("url")(valid_store_url)


class AdminConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(7780, ge=0, le=65535)


class HealthConfig(_Strict):
    #: Readiness stays 503 while any of these peers has no open connection.
    require_peers: list[str] = []


class ConnectorConfig(_Strict):
    node_id: str = "connector"
    #: None: not configured. The node then asks its first parent over IL-DCP, or, with no
    #: parent, is ``test.connector`` (``settings.effective_file`` decides).
    ilp_address: str | None = None
    btp_server: BtpServerConfig = BtpServerConfig()
    asset: AssetConfig = AssetConfig()
    forwarding: ForwardingConfig = ForwardingConfig()
    store: StoreConfig = StoreConfig()
    admin: AdminConfig = AdminConfig()
    routing: RoutingConfig = RoutingConfig()
    rates: RatesConfig = RatesConfig()
    health: HealthConfig = HealthConfig()
    #: Every peer's without a ``rate_limit`` of its own; unset: unlimited.
    rate_limit: RateLimitConfig | None = None
    peers: list[PeerConfig] = []
    routes: list[RouteConfig] = []

    _address = field_validator("ilp_address")(valid_ilp_address)
    _node_id = field_validator("node_id")(valid_node_id)

    @model_validator(mode="after")
    def _references(self) -> ConnectorConfig:
        problems = reference_problems(
            [p.id for p in self.peers], [r.peer for r in self.routes], self.health.require_peers
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self


def reference_problems(
    ids: list[str], route_peers: list[str | None], required: list[str] | None = None
) -> list[str]:
    """What only the whole file can tell: duplicate peers, two spellings of one secret
    variable, routes to peers that are not configured."""
    problems = []
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"peers: duplicate id {', '.join(duplicates)}")
    spellings: dict[str, str] = {}
    for peer_id in ids:
        other = spellings.setdefault(canonical_peer_id(peer_id), peer_id)
        if other != peer_id:
            problems.append(
                f"peers: {other!r} and {peer_id!r} would share one secret variable "
                "(case, '-', '_' and '~' do not tell ids apart there)"
            )
    for index, peer in enumerate(route_peers):
        if peer is not None and peer not in ids:
            problems.append(f"routes.{index}.peer: {peer!r} is not a configured peer")
    for index, peer_id in enumerate(required or ()):
        if peer_id not in ids:
            problems.append(f"health.require_peers.{index}: {peer_id!r} is not a configured peer")
    return problems


def _raw_references(raw: dict[str, object]) -> list[str]:
    """``reference_problems`` of a file whose values did not all validate, so that one run
    reports every problem: the ids and route targets that are strings, as written."""
    peers = raw.get("peers")
    routes = raw.get("routes")
    ids = [
        p["id"] for p in (peers if isinstance(peers, list) else [])
        if isinstance(p, dict) and isinstance(p.get("id"), str)
    ]  # fmt: skip
    targets = [
        r.get("peer") if isinstance(r, dict) and isinstance(r.get("peer"), str) else None
        for r in (routes if isinstance(routes, list) else [])
    ]
    health = raw.get("health")
    required = health.get("require_peers") if isinstance(health, dict) else None
    names = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
    return reference_problems(ids, targets, names)


def readable(error: Any) -> str:
    """Pydantic's message in our words: no prefix, no documentation URL."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message.replace("Input should be", "must be")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what and where, never the file's text (it may hold what it should not)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "unreadable"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def load_config(path: Path) -> ConnectorConfig:
    """Read and validate ``path``; every problem becomes one ``ConfigurationError``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigurationError(f"{path}: not valid YAML: nested too deeply") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: the top level must be a mapping of keys")
    try:
        return ConnectorConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = readable(error)
            # Cross-field checks name their own field (routes.0.peer: ...), one per line.
            for line in message.splitlines():
                problems.append(f"{path}: {where}: {line}" if where else f"{path}: {line}")
        for line in _raw_references(raw):
            if f"{path}: {line}" not in problems:
                problems.append(f"{path}: {line}")
        raise ConfigurationError("\n".join(problems)) from None
