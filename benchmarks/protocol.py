"""The demo shop through uvicorn's HTTP/1.1 protocol in process: `python benchmarks/protocol.py [--smoke]`.

The four apps of `network.py` (the bare shop, the same page without the middleware, the least
a middleware that sends kept responses again can do, and the shop with the middleware), each
behind uvicorn's h11 protocol object fed the bytes of a request and writing its response to a
transport in memory: everything the server does per request except the sockets, without wrk
sharing the machine. The apps take turns in short rounds and the median of each is reported,
which makes this far steadier than the network section; the target is judged over the network.
`--uvicorn standard`: httptools' protocol object in uvloop's event loop instead.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import time
from typing import Any

from common import Row, Section, median_ratio, ratio, run_alone
from network import APPS, SERVERS, missing, run_loop, uvicorn_option
from uvicorn.config import Config
from uvicorn.server import ServerState

TITLE = "3b. Demo shop through uvicorn's protocol in process (no sockets)"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nAccept-Language: de\r\n\r\n"


class MemoryTransport(asyncio.Transport):
    """Where the protocol writes its responses; nothing is ever paused or closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connection:
    """One keep-alive connection to one app."""

    def __init__(self, app: str, uvicorn: str = "plain") -> None:
        module, _, name = app.partition(":")
        asgi = getattr(importlib.import_module(module), name)
        config = Config(asgi, http=SERVERS[uvicorn][0], log_level="warning", access_log=False)
        config.load()
        self.protocol = config.http_protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
        self.transport = MemoryTransport()
        self.protocol.connection_made(self.transport)

    async def request(self) -> bytes:
        self.protocol.data_received(REQUEST)
        while (cycle := self.protocol.cycle) is None or not cycle.response_complete:
            await asyncio.sleep(0)  # the protocol runs the app in a task of its own
        response = b"".join(self.transport.written)
        self.transport.written.clear()
        return response


async def _measure(smoke: bool, uvicorn: str) -> Section:
    section = Section(TITLE, "µs per request")
    rounds, per_round = (3, 50) if smoke else (60, 500)
    connections = {name: Connection(app, uvicorn) for name, app in APPS.items()}
    responses = {name: await connection.request() for name, connection in connections.items()}
    bodies = {name: response.partition(b"\r\n\r\n")[2] for name, response in responses.items()}
    if b"Willkommen" not in bodies["with middleware"] or any(
        bodies[name] != bodies["with middleware"] for name in ("same page, no middleware", "least replaying middleware")
    ):
        section.skipped = "the servers did not send the expected pages"
        return section
    times: dict[str, list[float]] = {name: [] for name in connections}
    order = list(connections)
    for _ in range(rounds):  # short turns, so that drift in the machine's speed hits every app alike
        for name in order:
            began = time.perf_counter()
            for _ in range(per_round):
                await connections[name].request()
            times[name].append((time.perf_counter() - began) / per_round * 1e6)
        order.reverse()
    median = {name: statistics.median(values) for name, values in times.items()}
    bare = median["bare app"]
    section.rows.append(Row("per request (median)", dict(median)))
    section.rows.append(Row("requests/s ÷ bare app's", {name: ratio(bare, value) for name, value in median.items()}))
    paired = {name: median_ratio(times["bare app"], values) for name, values in times.items()}
    section.rows.append(Row("requests/s ÷ bare app's in the same round, median", paired))
    section.notes.append(
        "GET / with Accept-Language: de on one keep-alive connection;"
        f" {rounds} rounds of {per_round} requests, the apps taking turns (in reverse order every other"
        " round). The least replaying middleware (`floor_shop.py`) digests the request's headers as the"
        " middleware does, wraps `send`, compares the app's answer with the one it saw and sends the"
        " personalized page's bytes: no route table, switches, consent, policy or bounded cache."
        f" uvicorn's {SERVERS[uvicorn][0]} protocol in {SERVERS[uvicorn][1]}'s event loop."
    )
    return section


def measure(smoke: bool = False, uvicorn: str = "plain") -> Section:
    reason = missing(uvicorn)
    if reason:
        return Section(TITLE, "µs per request", skipped=reason)
    for app in APPS.values():
        importlib.import_module(app.partition(":")[0])  # before the loop: one of them runs the shop at import
    return run_loop(_measure(smoke, uvicorn), uvicorn)


def main() -> None:
    run_alone(__doc__, measure, "a few short rounds", uvicorn_option)


if __name__ == "__main__":
    main()
