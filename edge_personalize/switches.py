"""The owner's on/off switches for site, routes, slots and variants, changed without a redeploy.

A switch that is off means default content, as if the rule did not exist; a missing entry means on.
The store only holds overrides: the config's own `enabled` flags are applied elsewhere.

Two stores share one interface: `FileSwitchStore` (a TOML file, the default, no server) and
`RedisSwitchStore` (a Redis hash plus pub/sub, for fleets of workers and machines).
`current()` is called on every personalized request, so both hand out an immutable snapshot
that is replaced as a whole, never mutated, and neither ever raises or waits on the network there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis

__all__ = [
    "ALL_ON",
    "LEVELS",
    "FileSwitchStore",
    "Level",
    "RedisSwitchStore",
    "SwitchStore",
    "SwitchStoreError",
    "Switches",
    "open_store",
]

logger = logging.getLogger("edge_personalize")

Level = Literal["site", "route", "slot", "variant"]
LEVELS: tuple[Level, ...] = get_args(Level)
Switch = tuple[Level, str]

SITE = "*"  # the one name the site level has
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the config's rule for slot and variant names


class SwitchStoreError(Exception):
    """A switch could not be read or written; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Switches:
    """An immutable snapshot of the switches that are off; everything not listed is on."""

    off: frozenset[Switch]

    def allows(self, level: Level, name: str) -> bool:
        """True unless this level is switched off. Levels are independent: the caller checks each."""
        return not self.off or (level, _normalized(level, name)) not in self.off

    def personalizes(self, route: str) -> bool:
        """True unless the whole site or this route is switched off."""
        return not self.off or (("site", SITE) not in self.off and ("route", route) not in self.off)

    def with_switch(self, level: Level, name: str, on: bool) -> Switches:
        """A copy with one switch set."""
        if level not in LEVELS:
            raise ValueError(f"unknown switch level {level!r}; expected one of {list(LEVELS)}")
        switch = (level, _normalized(level, name))
        return Switches(self.off - {switch} if on else self.off | {switch})


ALL_ON = Switches(frozenset())


class SwitchStore(Protocol):
    """What the middleware and the owner page need from a switch store."""

    def current(self) -> Switches:
        """The latest known switches: cheap, never blocks on I/O for long, never raises."""
        ...

    def set(self, level: Level, name: str, on: bool) -> None:
        """Turn one switch on or off for every worker; raises SwitchStoreError when that is impossible."""
        ...

    def close(self) -> None:
        """Release files, sockets and threads."""
        ...


def open_store(owner_switches_path: Path, redis_url: str | None) -> SwitchStore:
    """The Redis store when a URL is configured, otherwise the embedded file store."""
    if redis_url:
        return RedisSwitchStore(redis_url)
    return FileSwitchStore(owner_switches_path)


def _normalized(level: Level, name: str) -> str:
    # There is only one site, so any name given for it means the same switch.
    return SITE if level == "site" else name


def _checked_name(level: Level, name: str, where: str) -> str:
    # Names follow the config's rules, so a typo cannot create a switch that matches nothing.
    if level not in LEVELS:
        raise SwitchStoreError(f"{where}: unknown switch level {level!r}; expected one of {list(LEVELS)}")
    if level == "site":
        return SITE
    if level == "route":
        if not name.startswith("/") or not name.isprintable():
            raise SwitchStoreError(f"{where}: '{name}' is not a route path such as '/products/{{id}}'")
    elif level == "slot":
        if not _NAME.fullmatch(name):
            raise SwitchStoreError(f"{where}: '{name}' is not a slot name (1-64 letters, digits, '_', '.', '-')")
    else:
        slot, _, variant = name.partition("/")
        if not (_NAME.fullmatch(slot) and _NAME.fullmatch(variant)):
            raise SwitchStoreError(f"{where}: '{name}' is not a variant name such as 'hero/german-speakers'")
    return name


def _snapshot(entries: Mapping[Switch, bool]) -> Switches:
    return Switches(frozenset(switch for switch, on in entries.items() if not on))


# --- the embedded file store ---------------------------------------------------------------------

_TABLES: dict[str, Level] = {"routes": "route", "slots": "slot", "variants": "variant"}
_HEADER = "# edge-personalize switches: false turns a level off (default content); missing means on."
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# A file version is identified by what a stat call tells cheaply. The inode is part of it because
# writers replace the file by renaming, which can keep size and (on coarse clocks) mtime unchanged.
_Version = tuple[int, int, int]


def _parse(text: str) -> dict[Switch, bool]:
    data = tomllib.loads(text)
    entries: dict[Switch, bool] = {}
    for key, value in data.items():
        if key == "site":
            entries[("site", SITE)] = _flag(value, "site")
        elif key in _TABLES:
            if not isinstance(value, dict):
                raise SwitchStoreError(f"{key}: expected a table [{key}]")
            level = _TABLES[key]
            for name, flag in value.items():
                where = f'{key}."{name}"'
                entries[(level, _checked_name(level, name, where))] = _flag(flag, where)
        else:
            hint = get_close_matches(key, ["site", *_TABLES], n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise SwitchStoreError(f"{key}: unknown key{suggestion}")
    return entries


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        # `hero.german = false` parses as a nested table: the usual slip with names holding dots.
        raise SwitchStoreError(f"{where}: expected true or false; quote names with dots or slashes")
    raise SwitchStoreError(f"{where}: expected true or false, not {value!r}")


def _render(entries: Mapping[Switch, bool]) -> str:
    # Entries keep their order (the file's, then new ones at the end) so a human diff stays small.
    lines = [_HEADER]
    if ("site", SITE) in entries:
        lines.append(f"site = {_toml_bool(entries['site', SITE])}")
    for table, level in _TABLES.items():
        rows = [f"{_toml_key(name)} = {_toml_bool(on)}" for (kind, name), on in entries.items() if kind == level]
        if rows:
            lines += [f"[{table}]", *rows]
    return "\n".join(lines) + "\n"


def _toml_bool(on: bool) -> str:
    return "true" if on else "false"


def _toml_key(name: str) -> str:
    if _BARE_KEY.fullmatch(name):
        return name
    # Names are printable (checked), so escaping backslash and quote makes a valid basic string.
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class FileSwitchStore:
    """Switches in a small, human-editable TOML file; edits take effect within `check_interval` seconds.

    There is no background thread: `current()` compares the file's stat with the last version read at
    most every `check_interval` seconds and re-reads on change. A version that does not parse is
    logged once and ignored, keeping the last good switches.
    """

    def __init__(self, path: Path, *, check_interval: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = Path(path)
        self._interval = check_interval
        self._clock = clock
        # Held while reading or writing the file; current() never waits for it.
        self._lock = threading.Lock()
        self._next_check = clock() + check_interval
        self._bad: _Version | None = None
        # A broken file at start-up is an error, like a broken config: starting with everything on
        # would silently undo the switches the owner turned off.
        self._version, entries = self._read()
        self._switches = _snapshot(entries)

    def current(self) -> Switches:
        """The switches, re-checking the file at most every `check_interval` seconds."""
        now = self._clock()
        if now >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = now + self._interval
                self._refresh()
            finally:
                self._lock.release()
        return self._switches

    def set(self, level: Level, name: str, on: bool) -> None:
        """Write one switch to the file atomically, keeping every other entry; takes effect here at once."""
        name = _checked_name(level, name, str(self._path))
        with self._lock:
            # Start from the file, not from memory: another worker or a human may have changed it.
            _, entries = self._read()
            entries[(level, name)] = on
            version = self._write(_render(entries))
            self._version, self._bad = version, None
            self._switches = _snapshot(entries)

    def close(self) -> None:
        """Nothing to release: the file is only open while it is read or written."""

    def _refresh(self) -> None:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            version = None
        except OSError as exc:
            version = (-1, exc.errno or 0, 0)  # an unreadable file counts as one more bad version
        else:
            version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if version == self._version or (version is not None and version == self._bad):
            return
        try:
            self._version, entries = self._read()
        except SwitchStoreError as exc:
            # Warn once per bad version: a fix, or another broken edit, is a new version.
            self._bad = version
            logger.warning("%s; keeping the last good switches", exc)
            return
        self._bad = None
        self._switches = _snapshot(entries)

    def _read(self) -> tuple[_Version | None, dict[Switch, bool]]:
        try:
            with self._path.open("rb") as handle:
                stat = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            return None, {}
        except OSError as exc:
            raise SwitchStoreError(f"{self._path}: cannot read the switches: {exc.strerror or exc}") from None
        try:
            entries = _parse(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise SwitchStoreError(f"{self._path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise SwitchStoreError(f"{self._path}: not valid TOML: {exc}") from None
        except SwitchStoreError as exc:
            raise SwitchStoreError(f"{self._path}: {exc}") from None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns), entries

    def _write(self, text: str) -> _Version:
        # Write a sibling temp file and rename it over the old one: readers in other processes see
        # the old file or the new one, never a half-written one, and a crash leaves the old one.
        try:
            mode = os.stat(self._path).st_mode & 0o777
        except OSError:
            mode = 0o644
        directory = self._path.parent
        try:
            fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{self._path.name}.", suffix=".tmp")
        except OSError as exc:
            raise SwitchStoreError(f"{self._path}: cannot write the switches: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
                stat = os.fstat(handle.fileno())  # rename keeps inode, size and mtime
            os.chmod(temp, mode)
            os.replace(temp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise SwitchStoreError(f"{self._path}: cannot write the switches: {exc.strerror or exc}") from None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


# --- the Redis store ------------------------------------------------------------------------------

_OFF_VALUES = frozenset({"0", "false", "off", "no"})
_ON_VALUES = frozenset({"1", "true", "on", "yes"})
_POLL = 0.25  # how long the listener waits for a message before it checks for close()


def _field(level: Level, name: str) -> str:
    return "site" if level == "site" else f"{level}:{name}"


def _redacted(url: str) -> str:
    # Log and error messages name the server, never the password in the URL.
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisSwitchStore:
    """Switches in a Redis hash shared by every worker; changes arrive within a second by pub/sub.

    Fields are "site", "route:/x", "slot:hero", "variant:hero/german-speakers" with values "0" or "1".
    A daemon thread listens on `channel` and reloads the hash on every message, on every (re)connect
    and every `reload_interval` seconds as a safety net. While Redis is unreachable `current()` keeps
    the last known switches, the outage is logged once, and the thread retries with backoff.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str = "edge-personalize:switches",
        channel: str = "edge-personalize:switches",
        reload_interval: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise SwitchStoreError(
                "RedisSwitchStore needs the redis package: pip install 'edge-personalize[redis]'"
            ) from None
        self._where = _redacted(url)
        self._key = key
        self._channel = channel
        self._reload_interval = reload_interval
        self._max_backoff = max_backoff
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        try:
            # Short timeouts and a single immediate retry (enough to replace a pooled connection that
            # a server restart closed): set() must fail fast while Redis is down, not hang a request.
            self._client: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=1.0, socket_timeout=1.0, retry=Retry(NoBackoff(), 1)
            )
        except ValueError as exc:
            raise SwitchStoreError(f"redis_url {self._where}: {exc}") from None
        self._switches = ALL_ON
        self._down = False
        self._warned_fields: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        # Orders set() against reloads, so that a reload that read the hash before a set() cannot
        # replace that set()'s snapshot afterwards. current() never takes it.
        self._write_lock = threading.Lock()
        # Load once before serving so the first requests already honor the switches.
        try:
            self._reload()
        except self._errors as exc:
            self._outage(exc)
        self._thread = threading.Thread(target=self._listen, name="edge-personalize-switches", daemon=True)
        self._thread.start()

    def current(self) -> Switches:
        """The last switches loaded from Redis (all on if it has never been reachable)."""
        return self._switches

    def set(self, level: Level, name: str, on: bool) -> None:
        """Write one switch to the hash and tell every worker; SwitchStoreError while Redis is down."""
        name = _checked_name(level, name, f"switch store {self._where}")
        field = _field(level, name)
        with self._write_lock:
            try:
                with self._client.pipeline(transaction=True) as pipe:
                    pipe.hset(self._key, field, "1" if on else "0")
                    pipe.publish(self._channel, field)
                    pipe.execute()
            except self._errors as exc:
                state = "on" if on else "off"
                raise SwitchStoreError(
                    f"switch store {self._where} is unreachable ({exc}); {level} '{name}' was not switched {state}"
                ) from None
            self._switches = self._switches.with_switch(level, name, on)

    def close(self) -> None:
        """Stop the listener thread and close the connections."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._client.close()

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self._channel)
                next_reload = time.monotonic() + self._reload_interval
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=_POLL)
                    now = time.monotonic()
                    # The subscribe confirmation is a message too: every (re)connect reloads, so a
                    # change made while this worker was cut off arrives as soon as Redis is back.
                    if message is not None or now >= next_reload:
                        self._reload()
                        next_reload = now + self._reload_interval
                        backoff = 0.1
                        self._recovered()
            except Exception as exc:  # any failure, not only Redis errors: the thread must survive
                self._outage(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            finally:
                pubsub.close()

    def _reload(self) -> None:
        with self._write_lock:
            raw: Mapping[bytes, bytes] = self._client.hgetall(self._key)  # type: ignore[assignment]
            self._switches = Switches(frozenset(self._off(raw.items())))

    def _off(self, items: Iterable[tuple[bytes, bytes]]) -> Iterable[Switch]:
        for raw_field, raw_value in items:
            field = raw_field.decode("utf-8", "replace")
            value = raw_value.decode("utf-8", "replace").strip().lower()
            kind, _, name = field.partition(":")
            level: Level | None = next((candidate for candidate in LEVELS if candidate == kind), None)
            try:
                if level is None or (level == "site") != (name == ""):
                    raise SwitchStoreError(f"unknown field '{field}'")
                name = _checked_name(level, name, f"field '{field}'")
                if value not in _OFF_VALUES | _ON_VALUES:
                    raise SwitchStoreError(f"field '{field}': expected 0 or 1, not '{value}'")
            except SwitchStoreError as exc:
                if (field, value) not in self._warned_fields:
                    self._warned_fields.add((field, value))
                    logger.warning("switch store %s, hash %s: %s; ignored (on)", self._where, self._key, exc)
                continue
            if value in _OFF_VALUES:
                yield (level, name)

    def _outage(self, exc: Exception) -> None:
        if not self._down:
            self._down = True
            logger.warning(
                "switch store %s is unreachable (%s); keeping the last known switches and retrying",
                self._where,
                exc,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            logger.info("switch store %s is reachable again; switches reloaded", self._where)
