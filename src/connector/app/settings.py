"""Settings from the environment, validated at start-up so that a typo fails loudly.

The names users were promised keep their names (``BTP_SERVER_PORT``, ``BTP_SERVER_HOST``,
``LOG_LEVEL``, ``LOG_FORMAT``); everything else is ``CONNECTOR_*``. Peer secrets are not settings:
``EnvSecretStore`` reads ``BTP_PEER_{PEER_ID}_SECRET`` when a peer authenticates.

``Settings.from_environment`` reads only the variables listed in ``VARIABLES``: an unknown
``CONNECTOR_*`` or ``BTP_SERVER_*`` variable (``CONNECTOR_MAX_INFLIGHT``) is a problem, not
silence, and every problem names the variable as it was set.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connector.app.config import (
    ConnectorConfig,
    readable,
    valid_ilp_address,
    valid_node_id,
    valid_store_url,
)
from connector.app.postgres_store import redact

#: The largest legal ILP packet is about 34 KB (32767 bytes of data, a 1023-byte address); a
#: frame of 256 KiB leaves room for extra protocol data while bounding memory per message.
DEFAULT_MAX_FRAME_SIZE = 256 * 1024


class Settings(BaseModel):
    """The environment's settings; built by ``from_environment`` (tests pass values directly)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)

    node_id: str = Field("connector", description="appears as nodeId in every log line")
    ilp_address: str | None = Field(None, description="this node's ILP address")
    # A connector in a container listens on all interfaces.
    btp_server_host: str = "0.0.0.0"  # noqa: S104
    btp_server_port: int = Field(3000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    config: Path | None = Field(None, description="the YAML configuration file")
    transport: Literal["websockets", "memory"] = "websockets"
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto", description="auto: uvloop when installed (about 30% more packets/s), else asyncio"
    )
    auth_timeout: float = Field(5.0, gt=0, le=300)
    max_in_flight: int = Field(4096, ge=1, le=1_000_000)
    max_violations: int = Field(3, ge=1, le=1000)
    max_frame_size: int = Field(DEFAULT_MAX_FRAME_SIZE, ge=40_000, le=64 * 1024 * 1024)
    max_connections: int = Field(1000, ge=1, le=100_000)
    max_pending_per_host: int = Field(
        32, ge=1, le=100_000, description="connections from one host not authenticated yet"
    )
    shutdown_timeout: float = Field(10.0, ge=0, le=600)
    ping_interval: float = Field(20.0, gt=0, le=3600)
    store_url: str | None = Field(None, description="beats store.url of the file")
    store_instance: str | None = Field(
        None, min_length=1, max_length=128, description="beats store.instance of the file"
    )

    _address = field_validator("ilp_address")(valid_ilp_address)
    _node_id = field_validator("node_id")(valid_node_id)

    _store_url = field_validator("store_url")(valid_store_url)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """The settings ``environ`` sets; ``EnvironmentProblems`` lists every problem at once.
        An empty variable counts as unset."""
        problems: list[str] = []
        values: dict[str, str] = {}
        source: dict[str, str] = {}  # setting -> the variable that set it
        for name in sorted(environ):
            if not name.startswith(PREFIXES) and name not in VARIABLES:
                continue
            if name not in KNOWN:
                hint = difflib.get_close_matches(name, sorted(KNOWN), n=1)
                more = f" (did you mean {hint[0]}?)" if hint else ""
                problems.append(f"{name}: not a variable this connector reads{more}")
                continue
            field = VARIABLES.get(name)
            if field is None or environ[name] == "":
                continue
            if field in source:
                problems.append(f"{name}: {source[field]} sets the same thing; set only one")
                continue
            values[field] = environ[name]
            source[field] = name
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                name = source.get(field, field)
                shown = redact(environ.get(name, ""))  # a URL's password never
                problems.append(f"{name}={shown!r}: {readable(error)}")
        if problems:
            raise EnvironmentProblems(problems)
        return settings


class EnvironmentProblems(ValueError):
    """Every problem of the environment, one line each, naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


PREFIXES = ("CONNECTOR_", "BTP_SERVER_")

#: Each variable and the setting it sets. The promised names first; ``CONNECTOR_*`` spellings of
#: them are accepted too (one of the two, not both).
VARIABLES: dict[str, str] = {
    "BTP_SERVER_HOST": "btp_server_host",
    "BTP_SERVER_PORT": "btp_server_port",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
    **{f"CONNECTOR_{field.upper()}": field for field in Settings.model_fields},
}

#: Read by the connector but not settings: the admin API's token (``build_admin``) and the test
#: suite's golden vectors directory.
OTHER_VARIABLES = ("CONNECTOR_ADMIN_TOKEN", "CONNECTOR_VECTORS_DIR")

KNOWN = frozenset(VARIABLES) | frozenset(OTHER_VARIABLES)


def effective_file(settings: Settings, file: ConnectorConfig | None) -> ConnectorConfig:
    """The file as it applies: every environment variable that was set beats its key
    (``BTP_SERVER_PORT`` beats ``btp_server.port``, and so on)."""
    base = file or ConnectorConfig()
    given = settings.model_fields_set
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for field, key in OVERRIDES:
        value = getattr(settings, field)
        if field in given and value is not None:
            section, _, name = key.rpartition(".")
            (sections.setdefault(section, {}) if section else top)[name] = value
    for section, values in sections.items():
        top[section] = getattr(base, section).model_copy(update=values)
    config = base.model_copy(update=top)
    if config.ilp_address is None and ildcp_parent(config) is None:
        # Nobody to ask: the default address. With a parent it stays None: asked over IL-DCP.
        return config.model_copy(update={"ilp_address": DEFAULT_ILP_ADDRESS})
    return config


#: The address of a node with none configured and no parent to ask.
DEFAULT_ILP_ADDRESS = "test.connector"


def ildcp_parent(config: ConnectorConfig) -> str | None:
    """The parent the node asks for its address over IL-DCP: the first in file order, and only
    when no address is configured (neither ``ilp_address`` nor ``CONNECTOR_ILP_ADDRESS``)."""
    if config.ilp_address is not None:
        return None
    return next((p.id for p in config.peers if p.relation == "parent"), None)


#: Which setting beats which key of the file: ``effective_file`` applies them, reports name them.
OVERRIDES = (
    ("node_id", "node_id"),
    ("ilp_address", "ilp_address"),
    ("btp_server_host", "btp_server.host"),
    ("btp_server_port", "btp_server.port"),
    ("store_url", "store.url"),
    ("store_instance", "store.instance"),
)


def runtime_config(settings: Settings, file: ConnectorConfig | None) -> dict[str, Any]:
    """What the container is built from: the effective file (``effective_file``) flattened,
    and the environment's own settings."""
    config = effective_file(settings, file)
    values = settings.model_dump()
    values.update(
        node_id=config.node_id,
        ilp_address=config.ilp_address or "",  # "": not known yet, asked of ildcp_parent
        ildcp_parent=ildcp_parent(config),
        btp_server_host=config.btp_server.host,
        btp_server_port=config.btp_server.port,
        btp_server_tls=config.btp_server.tls.model_dump() if config.btp_server.tls else None,
        trusted_proxies=list(config.btp_server.trusted_proxies),
        asset_code=config.asset.code,
        asset_scale=config.asset.scale,
        min_message_window=config.forwarding.min_message_window_ms / 1000,
        max_hold_time=config.forwarding.max_hold_time_ms / 1000,
        peers=[p.model_dump() for p in config.peers],
        routes=[r.model_dump() for r in config.routes],
        store_url=config.store.url,
        store_instance=config.store.instance,
        broadcast_interval=config.routing.broadcast_interval_ms / 1000,
        rates=config.rates.model_dump(),
        rate_limit=None if config.rate_limit is None else config.rate_limit.model_dump(),
        admin_host=config.admin.host,
        admin_port=config.admin.port,
        require_peers=list(config.health.require_peers),
        open_children=file is None,
        debug=settings.log_level == "debug",
    )
    return values
