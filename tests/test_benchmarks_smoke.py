"""The benchmark suite runs end to end in its smoke mode. No timing is asserted: benchmarks are not tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"rewriter", "per_request", "network", "protocol", "instructions", "streaming", "context"}


def test_smoke_mode_writes_every_section(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    env = {**os.environ, "EDGE_PERSONALIZE_SECRET": "smoke-test-secret-0123456789abcdef"}
    env.pop("EDGE_PERSONALIZE_DISABLED", None)
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--smoke", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(output.read_text())
    assert document["smoke"] is True
    assert set(document["sections"]) == SECTIONS
    for key, section in document["sections"].items():
        # A section is either measured or says why not (wrk or valgrind missing); it never fails.
        assert section["rows"] or section["skipped"].startswith(
            ("wrk is not installed", "valgrind is not installed")
        ), key
    assert document["targets"]
    assert "### Targets" in result.stdout
