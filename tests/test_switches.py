from __future__ import annotations

import logging
import os
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from edge_personalize.switches import (
    ALL_ON,
    FileSwitchStore,
    Level,
    RedisSwitchStore,
    SwitchStoreError,
    open_store,
)
from tests.redis_server import REDIS_SERVER, RedisServer, free_port

EXAMPLE = """\
# edge-personalize switches: false turns a level off (default content); missing means on.
site = true
[routes]
"/products/{id}" = false
[slots]
hero = false
[variants]
"hero/german-speakers" = false
"""

# (level, name, the same switch turned off in the file, the same switch as a Redis hash field)
LEVELS: list[tuple[Level, str, str, str]] = [
    ("site", "*", "site = false\n", "site"),
    ("route", "/products/{id}", '[routes]\n"/products/{id}" = false\n', "route:/products/{id}"),
    ("slot", "hero", "[slots]\nhero = false\n", "slot:hero"),
    ("variant", "hero/german-speakers", '[variants]\n"hero/german-speakers" = false\n', "variant:hero/german-speakers"),
]
LEVEL_IDS = [level for level, *_ in LEVELS]
KEY = "edge-personalize:switches"
CHANNEL = "edge-personalize:switches"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def edit(path: Path, text: str) -> None:
    """Save in place like an editor, a second after the previous save (stat must see a new version)."""
    before = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_text(text)
    later = before + 1_000_000_000
    os.utime(path, ns=(later, later))


def eventually(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.01)


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edge_personalize" and r.levelno == logging.WARNING]


# --- the snapshot ---------------------------------------------------------------------------------


def test_all_on_allows_every_level() -> None:
    assert all(ALL_ON.allows(level, name) for level, name, *_ in LEVELS)


def test_with_switch_returns_a_new_snapshot() -> None:
    off = ALL_ON.with_switch("slot", "hero", False)
    assert off.off == {("slot", "hero")}
    assert not off.allows("slot", "hero")
    assert off.allows("slot", "shipping")
    assert ALL_ON.allows("slot", "hero")
    assert off.with_switch("slot", "hero", True) == ALL_ON


def test_levels_are_independent() -> None:
    switches = ALL_ON.with_switch("slot", "hero", False)
    assert switches.allows("route", "hero")
    assert switches.allows("variant", "hero/german-speakers")


def test_site_has_a_single_switch_whatever_the_name() -> None:
    switches = ALL_ON.with_switch("site", "anything", False)
    assert switches.off == {("site", "*")}
    assert not switches.allows("site", "*")
    assert not switches.allows("site", "")


def test_a_route_is_personalized_unless_it_or_the_site_is_off() -> None:
    assert ALL_ON.personalizes("/products")
    route_off = ALL_ON.with_switch("route", "/products", False)
    assert not route_off.personalizes("/products")
    assert route_off.personalizes("/")
    assert not ALL_ON.with_switch("site", "*", False).personalizes("/")
    assert ALL_ON.with_switch("slot", "/products", False).personalizes("/products")


def test_with_switch_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown switch level 'page'"):
        ALL_ON.with_switch("page", "x", False)  # type: ignore[arg-type]


# --- the file store -------------------------------------------------------------------------------


def test_missing_file_means_all_on(tmp_path: Path) -> None:
    store = FileSwitchStore(tmp_path / "switches.toml")
    assert store.current() == ALL_ON


@pytest.mark.parametrize(("level", "name", "toml", "field"), LEVELS, ids=LEVEL_IDS)
def test_file_switches_each_level_off(tmp_path: Path, level: Level, name: str, toml: str, field: str) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(toml)
    switches = FileSwitchStore(path).current()
    assert switches.off == {(level, name)}
    assert not switches.allows(level, name)


def test_documented_example_file(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    assert FileSwitchStore(path).current().off == {
        ("route", "/products/{id}"),
        ("slot", "hero"),
        ("variant", "hero/german-speakers"),
    }


@pytest.mark.parametrize(("level", "name", "toml", "field"), LEVELS, ids=LEVEL_IDS)
def test_file_set_each_level_takes_effect_at_once_and_persists(
    tmp_path: Path, level: Level, name: str, toml: str, field: str
) -> None:
    path = tmp_path / "switches.toml"
    store = FileSwitchStore(path, clock=FakeClock())
    store.set(level, name, False)
    assert store.current().off == {(level, name)}
    assert FileSwitchStore(path).current().off == {(level, name)}
    store.set(level, name, True)
    assert store.current() == ALL_ON
    assert FileSwitchStore(path).current() == ALL_ON


def test_file_set_keeps_other_entries_in_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    store = FileSwitchStore(path)
    store.set("slot", "shipping", False)
    store.set("route", "/products/{id}", True)
    assert path.read_text() == EXAMPLE.replace('"/products/{id}" = false', '"/products/{id}" = true').replace(
        "hero = false\n", "hero = false\nshipping = false\n"
    )


def test_file_set_quotes_names_that_toml_needs_quoted(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    store = FileSwitchStore(path)
    odd = '/a "quoted" \\ path/{ü:path}'
    store.set("route", odd, False)
    store.set("slot", "hero.v2", False)
    assert tomllib.loads(path.read_text()) == {"routes": {odd: False}, "slots": {"hero.v2": False}}
    assert FileSwitchStore(path).current().off == {("route", odd), ("slot", "hero.v2")}


def test_file_set_sees_changes_made_by_another_worker(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    first, second = FileSwitchStore(path), FileSwitchStore(path)
    first.set("slot", "hero", False)
    second.set("slot", "shipping", False)  # before its own check interval: must not drop "hero"
    assert FileSwitchStore(path).current().off == {("slot", "hero"), ("slot", "shipping")}


def test_file_set_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    store = FileSwitchStore(path)
    with path.open() as reader_of_the_old_version:
        store.set("slot", "hero", True)
        # The old file was replaced by a new one, not rewritten under a reader's feet.
        assert reader_of_the_old_version.read() == EXAMPLE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["switches.toml"]


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    store = FileSwitchStore(path)

    def fail(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(SwitchStoreError, match=r"switches\.toml: cannot write the switches: No space left on device"):
        store.set("slot", "hero", True)
    assert path.read_text() == EXAMPLE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["switches.toml"]
    assert not store.current().allows("slot", "hero")


def test_file_set_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    path.chmod(0o640)
    FileSwitchStore(path).set("slot", "hero", True)
    assert path.stat().st_mode & 0o777 == 0o640


def test_file_set_in_a_missing_directory_raises(tmp_path: Path) -> None:
    store = FileSwitchStore(tmp_path / "nowhere" / "switches.toml")
    with pytest.raises(SwitchStoreError, match="cannot write the switches"):
        store.set("slot", "hero", False)


@pytest.mark.parametrize(
    ("level", "name", "message"),
    [
        ("route", "products", "'products' is not a route path"),
        ("slot", "hero banner", "'hero banner' is not a slot name"),
        ("variant", "german-speakers", "'german-speakers' is not a variant name such as 'hero/german-speakers'"),
        ("page", "x", "unknown switch level 'page'"),
    ],
)
def test_file_set_rejects_names_no_rule_can_have(tmp_path: Path, level: Any, name: str, message: str) -> None:
    path = tmp_path / "switches.toml"
    with pytest.raises(SwitchStoreError, match=message):
        FileSwitchStore(path).set(level, name, False)
    assert not path.exists()


def test_file_set_refuses_to_overwrite_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    store = FileSwitchStore(path)
    edit(path, "[slots\nhero = false\n")
    with pytest.raises(SwitchStoreError, match=r"switches\.toml: not valid TOML"):
        store.set("slot", "shipping", False)
    assert path.read_text() == "[slots\nhero = false\n"


def test_edit_takes_effect_after_the_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    clock = FakeClock()
    store = FileSwitchStore(path, check_interval=0.5, clock=clock)
    edit(path, "[slots]\nhero = false\n")
    clock.advance(0.4)
    assert store.current() == ALL_ON  # not re-checked yet: no stat on every request
    clock.advance(0.1)
    assert store.current().off == {("slot", "hero")}
    edit(path, "[slots]\nhero = true\n")
    clock.advance(0.5)
    assert store.current() == ALL_ON


def test_edit_takes_effect_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    store = FileSwitchStore(path, check_interval=0.1)
    path.write_text("site = false\n")
    eventually(lambda: not store.current().allows("site", "*"), timeout=1.0)


def test_deleted_file_means_all_on(tmp_path: Path) -> None:
    path = tmp_path / "switches.toml"
    path.write_text(EXAMPLE)
    clock = FakeClock()
    store = FileSwitchStore(path, clock=clock)
    path.unlink()
    clock.advance(1)
    assert store.current() == ALL_ON


def test_invalid_edit_keeps_last_good_and_warns_once_per_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "switches.toml"
    path.write_text("[slots]\nhero = false\n")
    clock = FakeClock()
    store = FileSwitchStore(path, clock=clock)
    good = store.current()

    edit(path, "[slots]\nhero = flase\n")
    for _ in range(5):
        clock.advance(1)
        assert store.current() == good
    assert len(warnings_from(caplog)) == 1
    assert "switches.toml: not valid TOML" in warnings_from(caplog)[0]
    assert "keeping the last good switches" in warnings_from(caplog)[0]

    edit(path, '[slots]\nhero = "no"\n')  # another bad version: one more warning
    for _ in range(3):
        clock.advance(1)
        assert store.current() == good
    assert len(warnings_from(caplog)) == 2
    assert "slots.\"hero\": expected true or false, not 'no'" in warnings_from(caplog)[1]

    edit(path, "[slots]\nshipping = false\n")
    clock.advance(1)
    assert store.current().off == {("slot", "shipping")}
    assert len(warnings_from(caplog)) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[slots\n", "not valid TOML"),
        ("[slot]\nhero = false\n", "slot: unknown key (did you mean 'slots'?)"),
        ("site = 0\n", "site: expected true or false, not 0"),
        ("routes = false\n", "routes: expected a table [routes]"),
        ("[variants]\nhero.german = false\n", 'variants."hero": expected true or false; quote names with dots'),
        ('[routes]\n"products" = false\n', "'products' is not a route path"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_broken_file_at_start_up_is_an_error_naming_the_problem(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = tmp_path / "switches.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(SwitchStoreError, match=r"switches\.toml: ") as caught:
        FileSwitchStore(path)
    assert message in str(caught.value)


def test_open_store_defaults_to_the_file(tmp_path: Path) -> None:
    store = open_store(tmp_path / "switches.toml", None)
    assert isinstance(store, FileSwitchStore)
    store.close()


# --- the Redis store ------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("needs the redis-server binary (Debian package redis-server)")
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def open_redis_store(redis_server: RedisServer) -> Iterator[Callable[..., RedisSwitchStore]]:
    stores: list[RedisSwitchStore] = []

    def make(**kwargs: Any) -> RedisSwitchStore:
        store = RedisSwitchStore(redis_server.url, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.mark.parametrize(("level", "name", "toml", "field"), LEVELS, ids=LEVEL_IDS)
def test_redis_set_each_level(
    open_redis_store: Callable[..., RedisSwitchStore],
    redis_client: redis.Redis,
    level: Level,
    name: str,
    toml: str,
    field: str,
) -> None:
    store = open_redis_store()
    store.set(level, name, False)
    assert store.current().off == {(level, name)}
    assert redis_client.hgetall(KEY) == {field.encode(): b"0"}
    assert open_redis_store().current().off == {(level, name)}  # a worker started later
    store.set(level, name, True)
    assert store.current() == ALL_ON
    assert redis_client.hgetall(KEY) == {field.encode(): b"1"}


def test_redis_fields_written_by_hand_are_read(
    open_redis_store: Callable[..., RedisSwitchStore], redis_client: redis.Redis
) -> None:
    store = open_redis_store()
    redis_client.hset(KEY, mapping={field: "0" for *_, field in LEVELS})
    redis_client.publish(CHANNEL, "changed")
    eventually(lambda: store.current().off == {(level, name) for level, name, *_ in LEVELS})


def test_two_workers_see_each_others_changes_within_a_second(
    open_redis_store: Callable[..., RedisSwitchStore],
) -> None:
    first, second = open_redis_store(), open_redis_store()
    first.set("slot", "hero", False)
    eventually(lambda: not second.current().allows("slot", "hero"))
    second.set("slot", "hero", True)
    eventually(lambda: first.current().allows("slot", "hero"))


def test_redis_reloads_periodically_without_a_message(
    open_redis_store: Callable[..., RedisSwitchStore], redis_client: redis.Redis
) -> None:
    store = open_redis_store(reload_interval=0.2)
    redis_client.hset(KEY, "slot:hero", "0")  # no publish: a message lost on the way
    eventually(lambda: not store.current().allows("slot", "hero"))


def test_redis_bad_fields_are_ignored_and_warned_about_once(
    open_redis_store: Callable[..., RedisSwitchStore], redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_redis_store()
    redis_client.hset(KEY, mapping={"slot:hero": "maybe", "page:/x": "0", "route:/a": "0"})
    redis_client.publish(CHANNEL, "changed")
    eventually(lambda: not store.current().allows("route", "/a"))
    redis_client.hset(KEY, "route:/b", "0")
    redis_client.publish(CHANNEL, "changed")
    eventually(lambda: not store.current().allows("route", "/b"))
    assert store.current().allows("slot", "hero")
    bad = warnings_from(caplog)
    assert len(bad) == 2  # once per bad field, however often the hash is reloaded
    assert "field 'slot:hero': expected 0 or 1, not 'maybe'; ignored (on)" in bad[0]
    assert "unknown field 'page:/x'" in bad[1]


def test_redis_outage_keeps_last_known_switches_and_recovers(
    redis_server: RedisServer, open_redis_store: Callable[..., RedisSwitchStore], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge_personalize")
    store = open_redis_store(max_backoff=0.1)
    store.set("slot", "hero", False)

    redis_server.stop()
    eventually(lambda: len(warnings_from(caplog)) == 1)
    assert "unreachable" in warnings_from(caplog)[0]
    assert not store.current().allows("slot", "hero")
    with pytest.raises(SwitchStoreError, match=r"unreachable .*; route '/x' was not switched off"):
        store.set("route", "/x", False)
    time.sleep(0.5)  # several retries at the 0.1 s backoff cap
    assert len(warnings_from(caplog)) == 1  # once per outage, not per retry
    assert not store.current().allows("slot", "hero")

    redis_server.start()  # an empty server: nothing is persisted
    open_redis_store().set("variant", "hero/german-speakers", False)  # another worker, after the restart
    eventually(lambda: store.current().off == {("variant", "hero/german-speakers")})
    eventually(lambda: any("reachable again" in r.getMessage() for r in caplog.records))
    assert len(warnings_from(caplog)) == 1
    store.set("slot", "shipping", False)  # its own connections recovered too
    assert not store.current().allows("slot", "shipping")


def test_redis_down_at_start_up_is_all_on_until_it_comes_up(
    redis_server: RedisServer, open_redis_store: Callable[..., RedisSwitchStore], caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.stop()
    store = open_redis_store(max_backoff=0.1)
    assert store.current() == ALL_ON
    assert len(warnings_from(caplog)) == 1
    redis_server.start()
    open_redis_store().set("site", "*", False)
    eventually(lambda: not store.current().allows("site", "*"))
    assert len(warnings_from(caplog)) == 1


def test_redis_password_is_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    store = RedisSwitchStore(url)
    try:
        with pytest.raises(SwitchStoreError) as caught:
            store.set("slot", "hero", False)
    finally:
        store.close()
    assert "hunter2" not in str(caught.value)
    assert f"redis://***@127.0.0.1:{url.rsplit(':', 1)[1]}" in str(caught.value)
    assert warnings_from(caplog)
    assert not any("hunter2" in message for message in warnings_from(caplog))


@pytest.mark.parametrize("redis_up", [True, False], ids=["connected", "in-outage"])
def test_close_stops_the_thread_promptly(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture, redis_up: bool
) -> None:
    before = set(threading.enumerate())
    store = RedisSwitchStore(redis_server.url)
    (thread,) = set(threading.enumerate()) - before
    assert thread.daemon and thread.is_alive()
    if not redis_up:
        redis_server.stop()
        eventually(lambda: bool(warnings_from(caplog)))
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 1.0
    assert not thread.is_alive()
    store.close()  # twice is harmless


def test_missing_redis_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(SwitchStoreError, match=r"pip install 'edge-personalize\[redis\]'"):
        RedisSwitchStore("redis://127.0.0.1:6379/0")


def test_bad_redis_url_is_an_error() -> None:
    with pytest.raises(SwitchStoreError, match="redis_url"):
        RedisSwitchStore("http://127.0.0.1/0")


def test_open_store_uses_redis_when_a_url_is_configured(tmp_path: Path, redis_server: RedisServer) -> None:
    store = open_store(tmp_path / "switches.toml", redis_server.url)
    try:
        assert isinstance(store, RedisSwitchStore)
    finally:
        store.close()
