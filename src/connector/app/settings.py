"""Settings from the environment, validated at start-up so that a typo fails loudly.

The names users were promised keep their names (``BTP_SERVER_PORT``, ``BTP_SERVER_HOST``,
``LOG_LEVEL``, ``LOG_FORMAT``); everything else is ``CONNECTOR_*``. Peer secrets are not settings:
``EnvSecretStore`` reads ``BTP_PEER_{PEER_ID}_SECRET`` when a peer authenticates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector.app.config import ConnectorConfig, valid_ilp_address, valid_node_id

#: The largest legal ILP packet is about 34 KB (32767 bytes of data, a 1023-byte address); a
#: frame of 256 KiB leaves room for extra protocol data while bounding memory per message.
DEFAULT_MAX_FRAME_SIZE = 256 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CONNECTOR_", extra="ignore", validate_default=True, frozen=True
    )

    node_id: str = Field("connector", description="appears as nodeId in every log line")
    ilp_address: str = Field("test.connector", description="this node's ILP address")
    btp_server_host: str = Field(
        "0.0.0.0",  # noqa: S104 - a connector in a container listens on all interfaces
        validation_alias=AliasChoices("BTP_SERVER_HOST", "CONNECTOR_BTP_SERVER_HOST"),
    )
    btp_server_port: int = Field(
        3000,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("BTP_SERVER_PORT", "CONNECTOR_BTP_SERVER_PORT"),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=AliasChoices("LOG_LEVEL", "CONNECTOR_LOG_LEVEL")
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias=AliasChoices("LOG_FORMAT", "CONNECTOR_LOG_FORMAT")
    )
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


def runtime_config(settings: Settings, file: ConnectorConfig | None) -> dict[str, Any]:
    """What the container is built from: the file's values, overridden by any environment
    variable that was actually set (``BTP_SERVER_PORT`` beats the file's port, and so on)."""
    given = settings.model_fields_set
    base = file or ConnectorConfig()
    values = settings.model_dump()
    values.update(
        node_id=settings.node_id if "node_id" in given else base.node_id,
        ilp_address=settings.ilp_address if "ilp_address" in given else base.ilp_address,
        btp_server_host=(
            settings.btp_server_host if "btp_server_host" in given else base.btp_server.host
        ),
        btp_server_port=(
            settings.btp_server_port if "btp_server_port" in given else base.btp_server.port
        ),
        btp_server_tls=base.btp_server.tls.model_dump() if base.btp_server.tls else None,
        trusted_proxies=list(base.btp_server.trusted_proxies),
        asset_code=base.asset.code,
        asset_scale=base.asset.scale,
        min_message_window=base.forwarding.min_message_window_ms / 1000,
        max_hold_time=base.forwarding.max_hold_time_ms / 1000,
        peers=[p.model_dump() for p in base.peers],
        routes=[r.model_dump() for r in base.routes],
        store_url=settings.store_url or base.store.url,
        store_instance=settings.store_instance or base.store.instance,
        broadcast_interval=base.routing.broadcast_interval_ms / 1000,
        rates=base.rates.model_dump(),
        admin_host=base.admin.host,
        admin_port=base.admin.port,
        open_children=file is None,
        debug=settings.log_level == "debug",
    )
    return values
