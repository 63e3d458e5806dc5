from typing import Any

def skip(buf: bytes, pos: int, end: int, stop_tag: bytes | None = None, stop_attr: bytes | None = None, /) -> int: ...
def ifind(buf: bytes, pos: int, needle: bytes, other: bytes | None = None, /) -> int: ...
def key_inputs(
    wanted: frozenset[bytes],
    refuse: bytes,
    headers: Any,
    path: Any,
    query: Any,
    client: Any,
    /,
) -> bytes | None: ...
