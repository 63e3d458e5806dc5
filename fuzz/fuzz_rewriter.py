"""libFuzzer entry point for the rewriter: `python -m fuzz.fuzz_rewriter [flags] [corpus]`.

Prefer `python fuzz/run.py`, which bounds the time and keeps crashing inputs.
"""

from __future__ import annotations

import sys

import atheris

# Coverage feedback comes from our own code only; instrumenting Starlette or Babel too would
# slow every run for branches we do not own.
with atheris.instrument_imports(include=["edge_personalize", "fuzz"]):
    from fuzz.checks import rewriter_target


def main() -> None:
    atheris.Setup(sys.argv, rewriter_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
