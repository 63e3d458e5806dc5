"""A least-recently-used cache bounded by the bytes of what it holds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Values by key, up to `max_items` of them and `max_bytes` in all (each put says how large its
    value is); least recently used values go first, and a value larger than `max_item_bytes` is
    never kept."""

    def __init__(
        self, *, max_bytes: int = 16 * 1024 * 1024, max_item_bytes: int = 256 * 1024, max_items: int = 4096
    ) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self.max_items = max_items
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        if size > self.max_item_bytes or key in self._items:
            return
        self._items[key] = (value, size)
        self._size += size
        while self._size > self.max_bytes or len(self._items) > self.max_items:
            _, (_, old) = self._items.popitem(last=False)
            self._size -= old

    def discard(self, key: Hashable) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._size -= item[1]
