from __future__ import annotations

import pytest

from connector.app.container import Container
from connector.app.settings import EnvironmentProblems, Settings, runtime_config


def test_defaults() -> None:
    settings = Settings.from_environment({"PATH": "/bin"})
    assert settings.btp_server_port == 3000
    assert settings.btp_server_host == "0.0.0.0"
    assert settings.auth_timeout == 5.0
    assert settings.max_in_flight >= 1000
    assert settings.max_violations == 3
    assert settings.max_frame_size > 34_000


def test_promised_environment_names() -> None:
    settings = Settings.from_environment(
        {
            "BTP_SERVER_PORT": "4000",
            "BTP_SERVER_HOST": "127.0.0.1",
            "LOG_LEVEL": "debug",
            "CONNECTOR_ILP_ADDRESS": "g.example",
        }
    )
    assert (settings.btp_server_port, settings.btp_server_host) == (4000, "127.0.0.1")
    assert settings.log_level == "debug"
    assert settings.ilp_address == "g.example"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BTP_SERVER_PORT", "70000"),
        ("BTP_SERVER_PORT", "abc"),
        ("CONNECTOR_ILP_ADDRESS", "not an address"),
        ("LOG_LEVEL", "loud"),
        ("CONNECTOR_MAX_IN_FLIGHT", "0"),
        ("CONNECTOR_NODE_ID", "a b"),
    ],
)
def test_bad_values_fail_loudly(name: str, value: str) -> None:
    with pytest.raises(EnvironmentProblems) as raised:
        Settings.from_environment({name: value})
    (problem,) = raised.value.problems
    assert problem.startswith(f"{name}={value!r}: ")  # the variable as set, and its value
    assert "pydantic" not in problem
    assert "http" not in problem


def test_the_pipeline_that_runs_is_the_documented_list() -> None:
    container = Container()
    container.config.from_dict(
        runtime_config(
            Settings(ilp_address="test.z", transport="memory", store_url="memory://"), None
        )
    )
    pipeline = container.pipeline()
    # The order the README and docs/architecture.md give, read from the pipeline that runs.
    assert pipeline.names == [
        "rate_limit",
        "incoming_max_packet_amount",
        "peer_protocols",
        "incoming_balance",
        "route",
        "rate",
        "max_packet_amount",
        "expiry",
        "outgoing_balance",
        "fulfillment_check",
        "send",
    ]
    assert container.link_context().pipeline is pipeline  # the links run this very list
    assert pipeline.steps[-1].name == "send"


def test_container_selects_the_transport() -> None:
    container = Container()
    container.config.from_dict(
        runtime_config(Settings(transport="memory", store_url="memory://"), None)
    )
    assert type(container.transport()).__name__ == "MemoryServerTransport"
    container = Container()
    container.config.from_dict(
        runtime_config(
            Settings(transport="websockets", btp_server_port=0, store_url="memory://"), None
        )
    )
    assert type(container.transport()).__name__ == "WebsocketsServerTransport"
