"""``scripts/setup`` runs pip only when something it installs from changed.

The real scripts run in a copy of the checkout whose ``.venv/bin/python`` is a stand-in: it
records ``-m pip`` calls (and creates the entry points pip would) and hands everything else to
the real interpreter, so no network and no real install is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.helpers import GUARD, ROOT

FAKE_PYTHON = """#!/bin/sh
bin=$(dirname "$0")
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "$*" >>"$bin/../pip-calls"
  for tool in connector pytest mypy ruff; do
    printf '#!/bin/sh\\n' >"$bin/$tool" && chmod +x "$bin/$tool"
  done
  exit 0
fi
exec {python} "$@"
"""

#: Stands in for python3 on a fresh machine: ``-m venv [--clear] DIR`` makes the fake venv.
FAKE_BASE_PYTHON = """#!/bin/sh
[ "$1" = -m ] && [ "$2" = venv ] || exit 3
for dir; do :; done
echo venv >>"$(dirname "$0")/venv-calls"
rm -rf "$dir" && mkdir -p "$dir/bin" && cp "$(dirname "$0")/fake-venv-python" "$dir/bin/python"
"""


def _checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("setup", "needs-install"):
        shutil.copy2(ROOT / "scripts" / name, root / "scripts" / name)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "interop").mkdir()
    (root / "interop" / "package-lock.json").write_text("{}")
    (root / "interop" / "node_modules").mkdir()  # so --dev has no npm to run
    tools = tmp_path / "tools"
    tools.mkdir()
    fake = tools / "fake-venv-python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    base = tools / "python3"
    base.write_text(FAKE_BASE_PYTHON)
    base.chmod(0o755)
    return root


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": str(root.parent / "tools" / "python3")}
    return subprocess.run(
        [str(root / "scripts" / args[0]), *args[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=GUARD,
        check=False,
    )


def _pip_calls(root: Path) -> list[str]:
    calls = root / ".venv" / "pip-calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_setup_installs_on_a_fresh_checkout_and_not_again_until_something_changes(
    tmp_path: Path,
) -> None:
    root = _checkout(tmp_path)
    venv_calls = tmp_path / "tools" / "venv-calls"

    first = _run(root, "setup")
    assert first.returncode == 0, first.stderr
    assert venv_calls.read_text().splitlines() == ["venv"]  # no .venv: one was made
    assert _pip_calls(root) == ["-m pip install --quiet --editable ."]
    assert "first install" in first.stderr

    again = _run(root, "setup")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert len(_pip_calls(root)) == 1  # nothing changed: no pip
    assert venv_calls.read_text().splitlines() == ["venv"]

    with (root / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency, say\n")
    changed = _run(root, "setup")
    assert "pyproject.toml changed" in changed.stderr
    assert len(_pip_calls(root)) == 2

    (root / ".venv" / "bin" / "connector").unlink()
    missing = _run(root, "setup")
    assert ".venv/bin/connector is missing" in missing.stderr
    assert len(_pip_calls(root)) == 3
    assert _run(root, "setup").stderr == ""
    assert len(_pip_calls(root)) == 3


def test_dev_tools_install_once_and_satisfy_the_runtime(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    assert _run(root, "setup").returncode == 0
    dev = _run(root, "setup", "--dev")
    assert dev.returncode == 0, dev.stderr
    assert "the test tools are not installed yet" in dev.stderr
    assert _pip_calls(root)[-1] == "-m pip install --quiet --editable .[dev]"
    assert _run(root, "setup", "--dev").stderr == ""
    assert _run(root, "setup").stderr == ""
    assert len(_pip_calls(root)) == 2


def test_needs_install_notices_another_python_and_a_venv_that_cannot_run(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    assert _run(root, "setup").returncode == 0
    assert _run(root, "needs-install").returncode == 1
    stamp = root / ".venv" / "install-stamp"
    lines = stamp.read_text().splitlines()
    lines[1] = "3.11.0 (an older build)"
    stamp.write_text("\n".join(lines) + "\n")
    other = _run(root, "needs-install")
    assert (other.returncode, other.stdout) == (0, "the Python changed\n")

    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 127\n")  # its Python gone
    broken = _run(root, "needs-install")
    assert (broken.returncode, broken.stdout) == (0, ".venv/bin/python does not run\n")
    repaired = _run(root, "setup")
    assert repaired.returncode == 0, repaired.stderr
    assert (tmp_path / "tools" / "venv-calls").read_text().splitlines() == ["venv", "venv"]
    assert _run(root, "needs-install").returncode == 1
