"""Run every fuzz target for a bounded time and keep what crashes it.

    python fuzz/run.py --seconds 60 [--target rewriter] [--allow-missing]

Each target runs in its own process for its share of the time, so one crash does not stop the
others. A crashing input is saved as fuzz/crashes/<target>-<sha1>.bin, where
tests/test_fuzz_regressions.py replays it from then on. Exits 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
TARGETS = ("rewriter", "parsers", "speedups")
# Files libFuzzer writes for a failing input: an exception or signal, a hang, a memory blow-up.
ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-")
PER_INPUT_TIMEOUT = 10  # seconds; regexes on hostile input must stay linear, so a slow input is a bug


def atheris_missing() -> str | None:
    try:
        importlib.import_module("atheris")
    except ImportError as exc:
        return str(exc)
    return None


def run_target(target: str, seconds: int, work: Path) -> bool:
    corpus, artifacts = work / target / "corpus", work / target / "artifacts"
    corpus.mkdir(parents=True)
    artifacts.mkdir(parents=True)
    # New interesting inputs go to the scratch corpus (the first directory); the seeds stay as they are.
    command = [
        sys.executable,
        "-m",
        f"fuzz.fuzz_{target}",
        f"-max_total_time={seconds}",
        f"-timeout={PER_INPUT_TIMEOUT}",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}{os.sep}",
        f"-dict={FUZZ / f'{target}.dict'}",
        "-max_len=4096",
        str(corpus),
        str(FUZZ / "corpus" / target),
    ]
    log = work / f"{target}.log"
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            returncode = subprocess.run(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 120
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = -1
    elapsed = time.monotonic() - started
    lines = log.read_text("utf-8", "replace").splitlines()
    saved = []
    for artifact in sorted(artifacts.iterdir()):
        if artifact.name.startswith(ARTIFACTS):
            data = artifact.read_bytes()
            destination = FUZZ / "crashes" / f"{target}-{hashlib.sha1(data).hexdigest()}.bin"
            shutil.copyfile(artifact, destination)
            saved.append(destination)
    if returncode == 0 and not saved:
        done = next((line for line in reversed(lines) if line.startswith("Done ")), "done")
        print(f"{target}: ok, {done} ({elapsed:.0f} s)")
        return True
    print(f"{target}: FAILED (exit {returncode}) after {elapsed:.0f} s; last lines of the fuzzer's output:")
    print("\n".join("    " + line for line in lines[-40:]))
    for path in saved:
        print(f"{target}: crashing input saved as {path.relative_to(ROOT)}; replay it with")
        print(f"    python -m pytest tests/test_fuzz_regressions.py -k {path.stem}")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz the rewriter, its C scanner and the parsers for a bounded time.")
    parser.add_argument("--seconds", type=int, default=60, help="total time, shared by the targets (default 60)")
    parser.add_argument("--target", choices=TARGETS, action="append", help="run only this target (repeatable)")
    parser.add_argument(
        "--allow-missing", action="store_true", help="exit 0 with a message when atheris is not installed"
    )
    args = parser.parse_args(argv)
    targets = args.target or list(TARGETS)
    problem = atheris_missing()
    if problem is not None:
        print(f"fuzz/run.py: atheris is not available ({problem}); install it with: pip install atheris")
        if args.allow_missing:
            print("fuzz/run.py: --allow-missing given, skipping the fuzz run")
            return 0
        return 2
    share = max(1, args.seconds // len(targets))
    (FUZZ / "crashes").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-personalize-fuzz-") as scratch:
        results = [run_target(target, share, Path(scratch)) for target in targets]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
