"""The benchmark suite: `python benchmarks/run.py [--smoke] [--only SECTION ...]`.

Prints one table per section and a summary of the targets, and writes everything as JSON to
benchmarks/results/latest.json. Every comparison is made in the same run, on the same machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import context
import instructions
import network
import per_request
import protocol
import rewriter
import streaming
from common import Row, Section, table

HERE = Path(__file__).resolve().parent
SECTIONS: dict[str, Callable[[bool], Section]] = {
    "rewriter": rewriter.measure,
    "per_request": per_request.measure,
    "network": network.measure,
    "protocol": protocol.measure,
    "instructions": instructions.measure,
    "streaming": streaming.measure,
    "context": context.measure,
}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "packages": {
            name: _version(name) for name in ("starlette", "uvicorn", "jinja2", "python-lolhtml", "selectolax")
        },
    }


def targets(sections: dict[str, Section]) -> Section:
    summary = Section("Targets", "")
    for section in sections.values():
        if section.skipped:
            continue
        for row in section.rows:
            if row.target:
                case = f"{section.title.split('. ', 1)[-1]}: {row.case}"
                summary.rows.append(Row(case, {"measured": row.measured}, row.target, row.met))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few iterations: a few seconds in all")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "latest.json", help="where to write the JSON")
    args = parser.parse_args()
    # The demo shop refuses to start without a secret; any value does for measuring.
    os.environ.setdefault("EDGE_PERSONALIZE_SECRET", "benchmark-secret-0123456789abcdef")

    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Section] = {}
    failed = False
    for key in args.only or SECTIONS:
        begin = time.perf_counter()
        try:
            section = SECTIONS[key](args.smoke)
        except Exception as exc:
            traceback.print_exc()
            section = Section(key, "", skipped=f"failed: {type(exc).__name__}: {exc}")
            failed = True
        section.notes.append(f"({time.perf_counter() - begin:.1f} s)")
        results[key] = section
        print(table(section), flush=True)
    summary = targets(results)
    print(table(summary))

    document = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/run.py", *sys.argv[1:]]),
        "smoke": args.smoke,
        "machine": machine(),
        "sections": {key: section.as_json() for key, section in results.items()},
        "targets": [
            {"case": r.case, "measured": r.values["measured"], "target": r.target, "met": r.met} for r in summary.rows
        ],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"Written to {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
