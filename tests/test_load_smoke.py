"""The load test runs end to end in its short mode and finds nothing wrong. No timing is asserted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (Debian: apt install wrk)")
def test_short_load_has_no_errors_tracebacks_or_memory_growth() -> None:
    env = {**os.environ, "EDGE_PERSONALIZE_SECRET": "smoke-test-secret-0123456789abcdef"}
    env.pop("EDGE_PERSONALIZE_DISABLED", None)
    result = subprocess.run(
        [sys.executable, "benchmarks/load.py", "--short"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout
