"""libFuzzer entry point for the C scanner: `python -m fuzz.fuzz_speedups [flags] [corpus]`.

Prefer `python fuzz/run.py`, which bounds the time and keeps crashing inputs.
"""

from __future__ import annotations

import sys

import atheris

# Coverage feedback comes from our own code only; instrumenting Starlette or Babel too would
# slow every run for branches we do not own.
with atheris.instrument_imports(include=["edge_personalize", "fuzz"]):
    from fuzz.checks import speedups_target


def main() -> None:
    atheris.Setup(sys.argv, speedups_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
