"""The demo shop under sustained load with mixed visitors: `python benchmarks/load.py [--seconds N | --short]`.

One uvicorn worker serves `examples.shop.app:app` on a free loopback port; wrk loads it with
`-t2 -c64` for 60 s (`--short`: 5 s) through `load.lua`, which rotates paths, languages, CDN
countries, referrers, real consent cookies (fetched first from the consent endpoint), Sec-GPC
and User-Agents request by request. Fails (exit 1) on any socket error, any response that is
not 2xx/3xx, any traceback or warning in the server's log, a page that no longer matches what
it was before the load, or resident memory that grows by more than `--max-growth` MB between
the end of the warm-up and the end of the run. Needs wrk (Debian: apt install wrk).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

from common import Row, Section, table

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
APP = "examples.shop.app:app"
PREFIX = "/_personalize"

# (path, request headers, a text the response must contain): the pages the load must not change.
CHECKS: list[tuple[str, dict[str, str], str]] = [
    ("/", {"Accept-Language": "de"}, "Willkommen in unserem Laden"),
    ("/", {"Accept-Language": "fr", "Referer": "https://www.google.com/"}, "Bienvenue dans notre boutique"),
    ("/", {"Accept-Language": "de", "Referer": "https://t.co/x"}, "Welcome to our shop"),  # a shared link
    ("/products", {"CF-IPCountry": "AT"}, 'data-personalize="shipping"'),
    ("/products/1", {"CF-IPCountry": "US", "Sec-GPC": "1"}, "We ship worldwide"),
    ("/help/returns", {"Accept-Language": "de"}, "How returns work"),
    (f"{PREFIX}/why?path=/", {"Accept-Language": "fr", "CF-IPCountry": "DE"}, "french-speakers"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: str | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextmanager
def serve(log: IO[bytes]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """One uvicorn worker serving the shop, started as in network.py; its own process, so its RSS is the server's."""
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _get(port, "/", {})
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    log.seek(0)
                    raise RuntimeError(f"uvicorn {APP} did not start: {log.read()[-2000:].decode()}") from None
                time.sleep(0.05)
        yield server, port
    finally:
        server.terminate()
        server.wait(10)


def consent_cookies(port: int) -> dict[str, str]:
    """Real cookies as the consent endpoint sets them, posted the way the shop's own forms post them."""
    form_headers = {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
    posts = {
        "granted": ("/consent", {"choice": "accept", "next": "/"}),
        "refused": ("/consent", {"choice": "reject", "next": "/"}),
        "corrected": ("/correct", {"language": "fr", "country": "AT", "next": "/"}),
    }
    cookies = {}
    for name, (endpoint, fields) in posts.items():
        response = _request(port, "POST", PREFIX + endpoint, form_headers, urlencode(fields))
        set_cookie = [
            v for k, v in response.getheaders() if k.lower() == "set-cookie" and not v.split(";")[0].endswith("=")
        ]
        if response.status != 303 or len(set_cookie) != 1:
            raise RuntimeError(f"POST {PREFIX}{endpoint} {fields}: {response.status}, Set-Cookie {set_cookie}")
        cookies[name] = set_cookie[0].split(";", 1)[0]
    return cookies


def check_pages(port: int) -> dict[str, bytes]:
    pages = {}
    for path, headers, expected in CHECKS:
        status, body = _get(port, path, headers)
        if status != 200 or expected.encode() not in body:
            raise RuntimeError(f"GET {path} {headers}: {status}, expected {expected!r} in the page")
        pages[f"GET {path} {headers}"] = body
    return pages


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RssSampler(threading.Thread):
    """The server's resident set size once a second while the load runs."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.start_time = time.monotonic()
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.start_time, rss_mb(self.pid)))
            self.stopped.wait(1.0)

    def at(self, seconds: float) -> float:
        return next((rss for t, rss in self.samples if t >= seconds), self.samples[-1][1])


def run_wrk(
    port: int, cookies: dict[str, str], *, seconds: int, threads: int, connections: int
) -> tuple[dict[str, int], str]:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["-s", str(HERE / "load.lua"), f"http://127.0.0.1:{port}/"]
    command += ["--", cookies["granted"], cookies["refused"], cookies["corrected"]]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    lines = [line for line in output.splitlines() if line.startswith("LOAD-RESULT ")]
    if not lines:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return json.loads(lines[0].removeprefix("LOAD-RESULT ")), output


def measure(*, seconds: int, warmup: float, max_growth: float, threads: int, connections: int) -> Section:
    section = Section(f"Load: the demo shop for {seconds} s with mixed visitors (uvicorn + wrk)", "")
    with tempfile.TemporaryFile() as log, serve(log) as (server, port):
        rss_idle = rss_mb(server.pid)
        cookies = consent_cookies(port)
        before = check_pages(port)
        sampler = RssSampler(server.pid)
        sampler.start()
        result, output = run_wrk(port, cookies, seconds=seconds, threads=threads, connections=connections)
        sampler.stopped.set()
        sampler.join()
        rss_end = rss_mb(server.pid)
        after = check_pages(port)
        server_alive = server.poll() is None
        log.seek(0)
        server_log = log.read().decode(errors="replace")
    rss_warm = sampler.at(warmup)
    rss_peak = max(rss for _, rss in sampler.samples)
    growth = rss_end - rss_warm
    socket_errors = sum(result[k] for k in ("connect", "read", "write", "timeout"))
    rps = result["requests"] / (result["duration_us"] / 1e6)
    changed = [key for key in before if before[key] != after[key]]
    log_lines = [line for line in server_log.splitlines() if line.strip()]

    def row(case: str, value: float | str, target: str = "", met: bool | None = None) -> None:
        section.rows.append(Row(case, {"value": value}, target=target, met=met, measured=str(value)))

    row("requests", f"{result['requests']:,}")
    row("non-2xx/3xx responses", f"{result['status']:,}", "0", result["status"] == 0)
    row("socket errors (connect, read, write, timeout)", f"{socket_errors:,}", "0", socket_errors == 0)
    row("requests/s", rps)
    for p in ("p50", "p90", "p99", "max"):
        row(f"latency {p} (ms)", result[f"{p}_us"] / 1000)
    row("RSS before the load (MB)", rss_idle)
    row(f"RSS after {warmup:.3g} s of warm-up (MB)", rss_warm)
    row("RSS peak (MB)", rss_peak)
    row("RSS at the end (MB)", rss_end)
    row("RSS growth after warm-up (MB)", growth, f"< {max_growth:g} MB", growth < max_growth)
    row("tracebacks in the server log", str(server_log.count("Traceback")), "0", "Traceback" not in server_log)
    row("lines in the server log", str(len(log_lines)), "0", not log_lines)
    row("checked pages changed by the load", str(len(changed)), "0", not changed)
    row("server still running", "yes" if server_alive else "no", "yes", server_alive)
    mixed, unique = result["sent_mixed"], result["sent_unique"]
    section.notes.append(
        f"wrk -t{threads} -c{connections} -d{seconds}s -s benchmarks/load.lua: {mixed:,} requests from"
        f" {result['combinations']:,} combinations of path, Accept-Language, CF-IPCountry, Referer, consent cookie,"
        f" Sec-GPC and User-Agent, and {unique:,} with a User-Agent and referring site never seen before;"
        f" {result['bytes'] / 1e6:,.0f} MB received; one uvicorn worker."
    )
    step = max(1, seconds // 6)
    trend = ", ".join(f"{t:.0f} s: {rss:.1f}" for t, rss in sampler.samples if round(t) % step == 0)
    section.notes.append(f"Server RSS in MB during the load: {trend}; end: {rss_end:.1f}.")
    for key in changed:
        section.notes.append(f"Changed by the load: {key}.")
    if log_lines:
        section.notes.append("Server log (first lines):\n\n    " + "\n    ".join(log_lines[:20]))
    section.notes.append("\nwrk's own report:\n\n    " + "\n    ".join(output.splitlines()))
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="how long wrk runs (default 60)")
    parser.add_argument("--short", action="store_true", help="5 seconds, for CI")
    parser.add_argument(
        "--warmup", type=float, help="seconds before the baseline RSS is read (default: 10, or 1/3 of a shorter run)"
    )
    parser.add_argument(
        "--max-growth", type=float, default=20.0, help="allowed RSS growth after warm-up in MB (default 20)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt install wrk)")
    seconds = 5 if args.short else args.seconds
    warmup = args.warmup if args.warmup is not None else min(10.0, seconds / 3)
    os.environ.setdefault("EDGE_PERSONALIZE_SECRET", "benchmark-secret-0123456789abcdef")
    os.environ.pop("EDGE_PERSONALIZE_DISABLED", None)
    section = measure(
        seconds=seconds, warmup=warmup, max_growth=args.max_growth, threads=args.threads, connections=args.connections
    )
    print(table(section))
    failed = [row.case for row in section.rows if row.met is False]
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)
    print("passed")


if __name__ == "__main__":
    main()
