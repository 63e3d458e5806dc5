"""A cache bounded by the bytes of what it holds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Values by key, up to `max_items` of them and `max_bytes` in all (each put says how large its
    value is); the oldest values go first, and a value larger than `max_item_bytes` is never kept.

    Oldest, not least recently used: a lookup is then the dictionary's own, with nothing to update.
    The bounds are far above what a site's distinct pages take, so they are met only by a flood of
    distinct requests, and each value it pushes out is made once more in the next request for it.
    """

    get: Callable[[Hashable], V | None]

    def __init__(
        self, *, max_bytes: int = 16 * 1024 * 1024, max_item_bytes: int = 256 * 1024, max_items: int = 4096
    ) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self.max_items = max_items
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}
        self._size = 0
        self.get = self._items.get

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key: Hashable, value: V, size: int) -> None:
        if size > self.max_item_bytes or key in self._items:
            return
        self._items[key] = value
        self._sizes[key] = size
        self._size += size
        while self._size > self.max_bytes or len(self._items) > self.max_items:
            old, _ = self._items.popitem(last=False)
            self._size -= self._sizes.pop(old)

    def discard(self, key: Hashable) -> None:
        if self._items.pop(key, None) is not None:
            self._size -= self._sizes.pop(key)
