"""What a response kept to be sent again is, and what it is keyed by.

The middleware sends a response again only for the same inputs: the request headers a visitor's
context may read, the path, query and client address (keyed), the switches, and the app's status,
headers and body (compared as the app sends them). It keeps the request values only as a keyed
digest of `key_inputs`, never the values themselves.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_personalize.native import speedups
from edge_personalize.switches import Switch

# A keyed digest of the request values, and the switches that were off.
ReplayKey = tuple[bytes, frozenset[Switch]]


@dataclass(frozen=True, slots=True)
class Replay:
    """A response as it was sent, to send again for the same inputs while the app answers as it did then."""

    status: Any  # the app's status and headers, as it gave them
    app_headers: list[tuple[bytes, bytes]]
    source: bytes  # the app's body it was made from
    headers: tuple[tuple[bytes, bytes], ...]  # as sent
    body: bytes
    shown: tuple[tuple[str, str], ...]  # counted again each time it is sent
    until: datetime | None  # from then on it may no longer be true (the consent ran out, a new day began)


def byte_pairs(headers: Any) -> tuple[tuple[bytes, bytes], ...] | None:
    """Headers to keep, as a tuple of (bytes, bytes) tuples, or None when they are something else."""
    pairs = tuple(headers)
    for header in pairs:
        if (
            type(header) is not tuple
            or len(header) != 2
            or type(header[0]) is not bytes
            or type(header[1]) is not bytes
        ):
            return None
    return pairs


def python_key_inputs(
    wanted: frozenset[bytes],
    refuse: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    path: str,
    query: bytes,
    client: str,
) -> bytes | None:
    """An encoding of the request values a response is made from in which no two different sets of
    inputs give the same bytes: the request's headers named in `wanted`, in their order, and the
    path, query and client. None when a header is named `refuse`, or when an input cannot be
    encoded: such a response is made afresh."""
    picked = [header for header in headers if header[0] in wanted]
    for name, _ in picked:
        if name == refuse:
            return None
    try:
        # marshal's bytes can be read back (version 2 has no back-references), so they are unambiguous.
        return marshal.dumps((picked, path, query, client), 2)
    except ValueError:
        return None


_speedups = speedups()
# The C encoding where it is built: the same inputs told apart, at a fraction of the cost.
key_inputs: Callable[..., bytes | None] = python_key_inputs if _speedups is None else _speedups.key_inputs
