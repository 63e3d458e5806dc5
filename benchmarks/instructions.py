"""Instructions per request through uvicorn's protocol, counted: `python benchmarks/instructions.py [--smoke]`.

The four apps and the in-memory protocol of `protocol.py`, each driven in a process of its own
under valgrind's cachegrind, which counts the instructions the CPU executes: once with a few
requests (a warm-up) and once with 1,000 more, so that the difference is those requests' worth,
start-up and warm-up excluded. Instructions are not time (cache misses and the kernel's
work for the sockets are not in them), but their count does not depend on what else the machine
is doing, so this is the steadiest ratio of what the middleware does to what the bare app does.
Needs valgrind (Debian: apt install valgrind). `--uvicorn standard`: httptools and uvloop, as in `protocol.py`.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import Row, Section, ratio, run_alone
from network import APPS, SERVERS, missing, run_loop, uvicorn_option

HERE = Path(__file__).resolve().parent


async def _requests(app: str, number: int, uvicorn: str) -> None:
    from protocol import Connection  # the protocol's imports only in the counted process

    connection = Connection(app, uvicorn)
    for _ in range(number):
        await connection.request()


def _count(app: str, number: int, uvicorn: str) -> int:
    """Instructions of a process that sends `number` requests to `app`."""
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    command += [sys.executable, str(HERE / "instructions.py"), "--child", app, str(number), uvicorn]
    result = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind could not count {app}: {result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def measure(smoke: bool = False, uvicorn: str = "plain") -> Section:
    section = Section("3c. Demo shop through uvicorn's protocol, instructions counted (valgrind)", "instructions")
    if shutil.which("valgrind") is None:
        section.skipped = "valgrind is not installed (Debian: apt install valgrind)"
        return section
    section.skipped = missing(uvicorn)
    if section.skipped:
        return section
    few, more = (10, 20) if smoke else (400, 1400)  # the fewer warm up
    runs = [(name, app, number) for name, app in APPS.items() for number in (few, more)]
    with ThreadPoolExecutor() as pool:  # one process per CPU; the counts do not depend on it
        counts = list(pool.map(lambda run: _count(run[1], run[2], uvicorn), runs))
    by_run = {(name, number): count for (name, _, number), count in zip(runs, counts, strict=True)}
    per_request = {name: (by_run[name, more] - by_run[name, few]) / (more - few) for name in APPS}
    bare = per_request["bare app"]
    section.rows.append(Row("per request", dict(per_request)))
    section.rows.append(Row("bare app's ÷ each", {name: ratio(bare, value) for name, value in per_request.items()}))
    section.notes.append(
        f"GET / with Accept-Language: de on one keep-alive connection, as in 3b: {more - few:,} requests"
        f" counted (a process sending {more} minus one sending {few}, which warm up alike). The second"
        " row is the share of the bare app's speed each would reach if time followed instructions."
        f" uvicorn's {SERVERS[uvicorn][0]} protocol in {SERVERS[uvicorn][1]}'s event loop."
    )
    return section


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        app, number, uvicorn = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        importlib.import_module(app.partition(":")[0])  # before the loop: one of the apps runs the shop at import
        run_loop(_requests(app, number, uvicorn), uvicorn)
        return
    run_alone(__doc__, measure, "a few requests per app", uvicorn_option)


if __name__ == "__main__":
    main()
