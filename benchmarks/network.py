"""The demo shop over the network, with and without the middleware: `python benchmarks/network.py`.

Four uvicorn servers on this machine, `examples.shop.app:app`, the same routes without the
middleware (`benchmarks.bare_shop:app`), those routes sending the personalized page's bytes
without the middleware (`benchmarks.same_bytes_shop:app`), and behind the least a middleware that
sends kept responses again can do (`benchmarks.floor_shop:app`), each loaded in turn by wrk with
`Accept-Language: de` so that the home page is personalized: in turns, then all at once (which
is what the target is judged on). Needs wrk (Debian: apt install wrk).
`--smoke` for one short round, `--rounds N` for more rounds than the 20 of the table (a narrower
interval around the judged median), `--uvicorn standard` for uvicorn with httptools and uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from common import Row, Section, median_interval, paired_ratios, ratio, run_alone

ROOT = Path(__file__).resolve().parent.parent
APPS = {
    "bare app": "benchmarks.bare_shop:app",
    "same page, no middleware": "benchmarks.same_bytes_shop:app",
    "least replaying middleware": "benchmarks.floor_shop:app",
    "with middleware": "examples.shop.app:app",
}
HEADER = ("Accept-Language", "de")
ROUNDS = 20
# uvicorn as `pip install uvicorn` runs it, and as `pip install 'uvicorn[standard]'` does: named on the
# command line, so that the servers are the same whatever else is installed.
SERVERS = {"plain": ("h11", "asyncio"), "standard": ("httptools", "uvloop")}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers=dict([HEADER]))
        return conn.getresponse().read()
    finally:
        conn.close()


# The servers on one CPU and wrk on another, where the machine has two: neither then steals the
# other's time, which makes rounds far more alike.
SERVER_CPU, LOAD_CPU = 0, 1


def _pinned(cpu: int) -> list[str]:
    if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
        return []
    return ["taskset", "-c", str(sorted(os.sched_getaffinity(0))[cpu])]


@contextmanager
def serve(app: str, log: IO[bytes], uvicorn: str = "plain") -> Iterator[int]:
    port = _free_port()
    command = [*_pinned(SERVER_CPU), sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    http, loop = SERVERS[uvicorn]
    command += ["--http", http, "--loop", loop, "--no-access-log", "--log-level", "warning"]
    # The server's errors go to a file: one per failing request would drown the tables.
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _get(port)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    log.seek(0)
                    raise RuntimeError(f"uvicorn {app} did not start: {log.read()[-2000:].decode()}") from None
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _wrk(port: int, seconds: int, connections: int) -> list[str]:
    return [
        *_pinned(LOAD_CPU),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"{HEADER[0]}: {HEADER[1]}",
        f"http://127.0.0.1:{port}/",
    ]


def _results(output: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    latency = {
        f"p{p}": float(value) * _UNITS[unit]
        for p, value, unit in re.findall(r"^\s+(50|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", output)
    return {"rps": float(rps.group(1)), **latency, "errors": errors.group(0) if errors else None}


def wrk(port: int, *, seconds: int, connections: int) -> dict[str, Any]:
    """One server loaded alone."""
    return _results(subprocess.run(_wrk(port, seconds, connections), check=True, capture_output=True, text=True).stdout)


def wrk_at_once(ports: dict[str, int], *, seconds: int, connections: int) -> dict[str, dict[str, Any]]:
    """Every server loaded at the same time, each by a wrk of its own: the servers share the CPU they
    are pinned to, each getting an equal part of it from the scheduler, so their requests/s stand
    to one another as the costs of their requests, and a change in the machine's speed meets them
    all at the same moment."""
    loads = {
        name: subprocess.Popen(_wrk(port, seconds, connections), stdout=subprocess.PIPE, text=True)
        for name, port in ports.items()
    }
    outputs = {name: load.communicate()[0] for name, load in loads.items()}
    for name, load in loads.items():
        if load.returncode:
            raise RuntimeError(f"wrk failed on {name}:\n{outputs[name]}")
    return {name: _results(output) for name, output in outputs.items()}


SHORT = {"same page, no middleware": "same page", "least replaying middleware": "least middleware"}


def _against_bare_column(name: str) -> str:
    return f"{SHORT.get(name, name.removeprefix('with '))} ÷ bare"


def _against_bare(values: dict[str, float | None]) -> dict[str, float | None]:
    """Each server's number, then each against the bare app's."""
    bare = values["bare app"]
    ratios = {_against_bare_column(name): ratio(value, bare) for name, value in values.items()}
    return {**values, **{name: value for name, value in ratios.items() if name != "bare app ÷ bare"}}


def _shares(
    rounds_of: dict[str, list[dict[str, Any]]],
) -> tuple[dict[str, float | str | None], dict[str, tuple[float, float] | None]]:
    """The median of each app's ratio to the bare app, round by round, and the interval that holds it
    with 95% confidence."""
    bare = [result["rps"] for result in rounds_of["bare app"]]
    shares = {
        _against_bare_column(name): paired_ratios([result["rps"] for result in results], bare)
        for name, results in rounds_of.items()
        if name != "bare app"
    }
    medians: dict[str, float | str | None] = {
        name: statistics.median(found) if found else None for name, found in shares.items()
    }
    return medians, {name: median_interval(found) for name, found in shares.items()}


def _interval_row(intervals: dict[str, tuple[float, float] | None]) -> Row:
    shown = {name: None if found is None else f"{found[0]:.2f} to {found[1]:.2f}" for name, found in intervals.items()}
    return Row("95% interval of that median", shown)


def measure(smoke: bool = False, rounds: int = ROUNDS, uvicorn: str = "plain") -> Section:
    section = Section("3. Demo shop over the network (uvicorn + wrk)", "requests/s, latency in ms")
    if shutil.which("wrk") is None:
        section.skipped = "wrk is not installed (Debian: apt install wrk)"
        return section
    section.skipped = missing(uvicorn)
    if section.skipped:
        return section
    seconds, rounds, connections = (1, 2, 8) if smoke else (3, rounds, 32)
    rounds_of: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}  # wrk's results, round by round
    at_once: dict[str, list[dict[str, Any]]] = {name: [] for name in APPS}  # the same, every app loaded at once
    with tempfile.TemporaryFile() as log, ExitStack() as servers:
        ports = {name: servers.enter_context(serve(app, log, uvicorn)) for name, app in APPS.items()}
        pages = {name: _get(port) for name, port in ports.items()}
        problems = []
        if b"Willkommen" not in pages["with middleware"] or b"Willkommen" in pages["bare app"]:
            problems.append("the home page was not personalized as expected")
        for name in ("same page, no middleware", "least replaying middleware"):
            if pages[name] != pages["with middleware"]:
                problems.append(f"{name}: did not send the personalized page's bytes")
        if not smoke:
            for port in ports.values():
                wrk(port, seconds=2, connections=connections)  # warm up
        # The middleware right after the bare app (and before it every other round): the two are
        # measured seconds apart.
        order = [
            "bare app",
            "with middleware",
            *(name for name in ports if name not in ("bare app", "with middleware")),
        ]
        for _ in range(rounds):  # the apps take turns, so drift in the machine's speed hits every app alike
            for name in order:
                rounds_of[name].append(wrk(ports[name], seconds=seconds, connections=connections))
            order.reverse()  # and each app is as often early in a round as late
        for _ in range(rounds):
            for name, result in wrk_at_once(ports, seconds=seconds, connections=connections).items():
                at_once[name].append(result)
        problems += [
            f"{name}: wrk reported {result['errors']}"
            for runs in (rounds_of, at_once)
            for name, results in runs.items()
            for result in results
            if result["errors"]
        ]
        log.seek(0)
        errors = log.read().decode(errors="replace").count("Traceback")
        if errors:
            problems.append(f"the servers logged {errors} tracebacks")

    def median(key: str) -> dict[str, float | None]:
        values = {name: [result[key] for result in results if key in result] for name, results in rounds_of.items()}
        return {name: statistics.median(found) if found else None for name, found in values.items()}

    section.rows.append(Row("requests/s, median of the rounds", _against_bare(median("rps"))))
    # Each round's ratio compares apps measured seconds apart, so a change in the machine's speed
    # between rounds (here it drifts by more than the difference measured) cancels out of it.
    paired, intervals = _shares(rounds_of)
    section.rows.append(Row("requests/s ÷ bare app's in the same round, median", paired))
    section.rows.append(_interval_row(intervals))
    # Loaded at once, the apps meet every change in the machine's speed together: judged on these.
    paired, intervals = _shares(at_once)
    share, interval = paired["middleware ÷ bare"], intervals["middleware ÷ bare"]
    judged = share if isinstance(share, float) and not problems else None
    # Rounded down: a share just below the target never reads as reaching it.
    measured = "invalid run" if judged is None else f"{math.floor(judged * 1000) / 10:.1f}% of bare"
    if judged is not None and interval is not None:
        measured += f" (95% interval {interval[0]:.1%} to {interval[1]:.1%})"
    section.rows.append(
        Row(
            "requests/s ÷ bare app's, the apps loaded at once, median of the rounds",
            paired,
            target="≥ 90% of bare",
            met=None if judged is None else judged >= 0.9,
            measured=measured,
        )
    )
    section.rows.append(_interval_row(intervals))
    for problem in problems:
        section.notes.append(f"Invalid run, not judged: {problem}.")
    section.raw["requests/s by round"] = {
        name: [result["rps"] for result in results] for name, results in rounds_of.items()
    }
    section.raw["requests/s by round, loaded at once"] = {
        name: [result["rps"] for result in results] for name, results in at_once.items()
    }
    best = {name: max(result["rps"] for result in results) for name, results in rounds_of.items()}
    section.rows.append(Row("requests/s, best round", _against_bare(best)))
    for p in ("p50", "p90", "p99"):
        section.rows.append(Row(f"latency {p} (ms), median of the rounds", _against_bare(median(p))))
    section.notes.append(
        f"GET / with Accept-Language: de; page {len(pages['bare app']):,} bytes bare,"
        f" {len(pages['with middleware']):,} bytes personalized (German hero, badge, consent banner)."
        " The same page (`same_bytes_shop.py`): the same template rendered, and the personalized page's"
        " bytes and headers sent without the middleware (the larger page's own cost). The least"
        " replaying middleware (`floor_shop.py`): a layer that digests the request's headers as the"
        " middleware does, wraps `send`, compares the app's answer with the one it saw and sends those"
        " bytes (the price of being such a middleware at all)."
        f" wrk -t1 -c{connections} -d{seconds}s, first {rounds} rounds in which the apps take turns (in"
        " reverse order every other round): their medians, of requests/s and of each round's ratio to"
        f" the bare app. Then {rounds} rounds in which every app is loaded at once, each by its own wrk,"
        " the servers sharing one CPU in equal parts: judged on the median of each of those rounds' ratio"
        " to the bare app, since a change in the machine's speed, which between turns moves the ratios"
        " by more than the apps differ, meets the apps loaded at once at the same moment. The intervals"
        " hold the medians of such ratios with 95% confidence, whatever their distribution (order"
        " statistics of the rounds); they narrow with `--rounds`. Best round and latencies: the apps"
        " taking turns."
        f" One uvicorn worker each ({' and '.join(SERVERS[uvicorn])})"
        + (f", servers on CPU {SERVER_CPU} and wrk on CPU {LOAD_CPU} (taskset)." if _pinned(0) else ".")
    )
    return section


def missing(uvicorn: str) -> str | None:
    """Why the servers of that kind cannot run here, if they cannot."""
    absent = [name for name in SERVERS[uvicorn] if importlib.util.find_spec(name) is None]
    return f"{' and '.join(absent)} not installed (pip install 'uvicorn[standard]')" if absent else None


def run_loop(main: Coroutine[Any, Any, T], uvicorn: str) -> T:
    """Run `main` in the event loop those servers use."""
    if SERVERS[uvicorn][1] == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def uvicorn_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uvicorn",
        choices=tuple(SERVERS),
        default="plain",
        help="plain: h11 and asyncio (the default); standard: httptools and uvloop, as uvicorn[standard] runs",
    )


def _rounds(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of rounds, at least 1, not {value!r}")
    return int(value)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=_rounds, default=ROUNDS, help=f"rounds of the apps taking turns ({ROUNDS})")
    uvicorn_option(parser)


def main() -> None:
    run_alone(__doc__, measure, "one short round", _options)


if __name__ == "__main__":
    main()
