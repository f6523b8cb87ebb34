"""The ``connector`` command line: each command's help is its own."""

from __future__ import annotations

import pytest

from connector.app.main import main


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_demo_help_shows_the_demos_own_options(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", flag])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: connector demo")
    for option in ("--count", "--in-flight", "--destination"):
        assert option in out
    assert "--check-config" not in out


def test_top_level_help_shows_the_connectors_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: connector [")
    assert "--check-config" in out
    assert "connector demo --help" in out
    assert "--in-flight" not in out
