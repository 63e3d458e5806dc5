"""Fixtures for end-to-end tests: the example shop served by uvicorn, and Varnish in front of it.

Each server runs as a subprocess on a free loopback port and is stopped by the fixture's finalizer,
whatever the test did. A test that needs a server which is not installed is skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOP_APP = "examples.shop.app:app"
SHOP_SECRET = "e2e-shop-secret-0123456789abcdefghij"
VCL_TEMPLATE = Path(__file__).with_name("shop.vcl")
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Server:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ServerProcess:
    """A server subprocess whose output goes to a log file, read back when it fails to start."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            # A session of its own: if the server does not stop when asked, its whole group can be killed.
            self.process = subprocess.Popen(
                list(args),
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    def log_tail(self, limit: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")

    def wait_until_answers(self, server: Server, path: str, *, expect: int) -> None:
        """Poll `path` until it answers with status `expect`; fail with the server's log otherwise."""
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status == expect:
                    return
                last = f"status {response.status}"
            except OSError as exc:
                last = repr(exc)
            finally:
                conn.close()
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not answer {path} within {START_TIMEOUT:.0f} s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    # Not yet reaped, so the group id is still ours: this also ends Varnish's worker.
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(STOP_TIMEOUT)
        finally:
            self._log.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def find_varnishd() -> str | None:
    return shutil.which("varnishd") or shutil.which("varnishd", path="/usr/sbin:/usr/local/sbin:/opt/varnish/sbin")


@pytest.fixture(scope="session")
def shop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The example shop under uvicorn, with a consent secret set."""
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn is not installed (pip install 'edge-personalize[demo]')")
    server = Server(LOOPBACK, free_port())
    env = {**os.environ, "EDGE_PERSONALIZE_SECRET": SHOP_SECRET, "PYTHONUNBUFFERED": "1"}
    env.pop("EDGE_PERSONALIZE_DISABLED", None)
    args = [sys.executable, "-m", "uvicorn", SHOP_APP, "--host", server.host, "--port", str(server.port)]
    args += ["--no-access-log", "--log-level", "warning"]
    proc = ServerProcess("uvicorn", args, tmp_path_factory.mktemp("uvicorn") / "uvicorn.log", env=env)
    try:
        # The middleware is built on the first request: only a 200 shows the app really works.
        proc.wait_until_answers(server, "/privacy", expect=200)
        yield server
    finally:
        proc.stop()


def render_vcl(backend: Server) -> str:
    vcl = VCL_TEMPLATE.read_text()
    for name, value in (("BACKEND_HOST", backend.host), ("BACKEND_PORT", str(backend.port))):
        vcl = vcl.replace("${" + name + "}", value)
    return vcl


@pytest.fixture(scope="module")
def varnish(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Varnish in front of the shop, with an empty cache for each test module (see shop.vcl)."""
    varnishd = find_varnishd()
    if varnishd is None:
        pytest.skip("varnishd is not installed (apt-get install varnish)")
    shop_server: Server = request.getfixturevalue("shop_server")
    logs = tmp_path_factory.mktemp("varnish")
    # Varnish drops root privileges, so its VCL and working directory must be readable for another
    # user, and pytest's temporary directories are not.
    workdir = Path(tempfile.mkdtemp(prefix="ep-varnish-"))
    workdir.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    vcl = workdir / "shop.vcl"
    vcl.write_text(render_vcl(shop_server))
    vcl.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    server = Server(LOOPBACK, free_port())
    args = [varnishd, "-F", "-f", str(vcl), "-a", f"{server.host}:{server.port}", "-n", str(workdir / "n")]
    args += ["-T", f"{LOOPBACK}:0", "-s", "malloc,32m", "-p", "default_grace=0", "-p", "thread_pools=1"]
    args += ["-p", "thread_pool_min=10", "-p", "vsl_space=1M"]
    try:
        proc = ServerProcess("varnishd", args, logs / "varnishd.log")
        try:
            proc.wait_until_answers(server, "/__varnish_ready", expect=204)
            yield server
        finally:
            proc.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
