"""One fuzz target under atheris (coverage-guided, libFuzzer): ``python -m tests.fuzz.run TARGET
[libFuzzer arguments: a corpus folder, -max_total_time=SECONDS, ...]``. The connector's modules
are instrumented for coverage; a crash leaves its input in the working folder and exits 1."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["connector"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv.pop(1)
    target = TARGETS[name]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
