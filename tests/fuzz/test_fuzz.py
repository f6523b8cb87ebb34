"""The fuzz targets in CI: every input of the kept corpus (``tests/fuzz/corpus``, seeded from the
golden vectors, grown by ``scripts/fuzz``), then a short coverage-guided run of each (atheris;
hypothesis where atheris is not installed). A failure prints the input that caused it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"
ROOT = Path(__file__).resolve().parents[2]
#: Seconds of coverage-guided fuzzing per target in CI (``scripts/fuzz`` runs for longer).
BUDGET = 3


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_kept_input_still_holds(name: str) -> None:
    inputs = sorted((CORPUS / name).iterdir())
    assert inputs, f"no corpus for {name}"
    for path in inputs:
        try:
            TARGETS[name](path.read_bytes())
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{name}: {path.name} fails: {exc!r}") from exc


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_a_short_fuzz_run_finds_nothing(name: str, tmp_path: Path) -> None:
    """Coverage-guided with atheris; with random inputs (hypothesis) where it does not install."""
    if importlib.util.find_spec("atheris") is None:
        _random_inputs(name)
        return
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS / name, corpus)
    result = subprocess.run(
        [
            sys.executable, "-m", "tests.fuzz.run", name, str(corpus),
            f"-max_total_time={BUDGET}", "-timeout=10", "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=BUDGET + 60, check=False,
    )  # fmt: skip
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
    found = ", ".join(f"{p.name}={p.read_bytes().hex()}" for p in crashes)
    assert result.returncode == 0, f"{name}: {found}\n{result.stderr[-3000:]}"


def _random_inputs(name: str) -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        TARGETS[name](data)

    check()
