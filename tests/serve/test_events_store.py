"""The events stores' contract (mfrec.serve.events): one set of tests run against SQLite and
against a real redis-server started here (skipped where redis-server or the redis package is
absent, except in CI, where .ci/run installs both and a missing one fails)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest

from mfrec.serve.events import (
    Event,
    EventStoreError,
    max_per_user,
    open_store,
    store_location,
)
from mfrec.serve.events.redis_store import redacted
from mfrec.serve.events.sqlite_store import SQLiteStore


def event(user: str, item: str | None, at: float, event_id: str | None = None) -> Event:
    return Event(event_id or uuid.uuid4().hex, user, item, "click", 1.0, at, "s1")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A redis-server of Debian's package on a free loopback port, for this test session."""
    missing = [
        name
        for name, found in (
            ("redis-server", shutil.which("redis-server")),
            ("the redis package", _importable("redis")),
        )
        if not found
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{' and '.join(missing)} missing in CI: .ci/run installs them")
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """A function opening the store under test (same location each call: a restart)."""
    if request.param == "sqlite":
        location = str(tmp_path / "events.sqlite")
    else:
        location = request.getfixturevalue("redis_url")
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    opened = []

    def make(per_user: int = 5):
        store = open_store(location, per_user)
        if request.param == "redis":
            store.prefix = prefix  # each test its own keys on the shared server
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_histories_oldest_first_users_without_events_absent(make_store):
    store = make_store()
    assert store.put_events([event("u1", "b", 20.0), event("u1", "a", 10.0)]) == 2
    store.put_events([event("u2", "c", 5.0), event("u2", None, 6.0)])
    assert store.histories(["u1", "u2", "nobody"]) == {"u1": ("a", "b"), "u2": ("c",)}
    assert store.count() == 4


def test_same_event_id_is_stored_once(make_store):
    store = make_store()
    first = [event("u1", "a", 1.0, "e-1"), event("u1", "b", 2.0, "e-2")]
    assert store.put_events(first) == 2
    assert store.put_events([event("u1", "z", 3.0, "e-2"), event("u1", "c", 4.0, "e-3")]) == 1
    assert store.histories(["u1"]) == {"u1": ("a", "b", "c")}
    assert store.count() == 3


def test_history_is_bounded_per_user_oldest_dropped(make_store):
    store = make_store(per_user=3)
    store.put_events([event("u1", f"i{k}", float(k)) for k in range(5)])
    store.put_events([event("u1", "late", 2.5), event("u2", "x", 0.0)])
    assert store.histories(["u1", "u2"]) == {"u1": ("i2", "late", "i3", "i4")[-3:], "u2": ("x",)}
    assert store.count() == 4


def test_ties_in_time_keep_the_order_sent(make_store):
    store = make_store(per_user=10)
    store.put_events([event("u1", f"i{k}", 7.0) for k in range(4)])
    assert store.histories(["u1"]) == {"u1": ("i0", "i1", "i2", "i3")}


def test_events_survive_reopening_and_export_in_order(make_store):
    make_store().put_events([event("u2", "b", 2.0, "x2"), event("u1", "a", 1.0, "x1")])
    exported = list(make_store().events())
    assert [(e.user_id, e.item_id, e.event_id) for e in exported] == [
        ("u1", "a", "x1"),
        ("u2", "b", "x2"),
    ]
    assert exported[0] == event("u1", "a", 1.0, "x1")


def test_item_properties_and_their_version(make_store):
    store = make_store()
    assert store.items_version() == 0 and store.item_properties() == {}
    store.put_items({"i1": {"GENRE": "Comedy"}, "i2": {"GENRE": "Drama"}})
    first = store.items_version()
    store.put_items({"i1": {"GENRE": "Horror"}})
    assert store.items_version() != first
    assert make_store().item_properties() == {"i1": {"GENRE": "Horror"}, "i2": {"GENRE": "Drama"}}


def test_concurrent_writers_and_readers_lose_no_event(make_store):
    store = make_store(per_user=1000)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for batch in range(20):
                events = [event(f"w{worker}", f"i{batch}-{k}", batch + k / 10) for k in range(5)]
                store.put_events(events)
                store.histories([f"w{worker}", "w0"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    histories = store.histories([f"w{w}" for w in range(8)])
    assert [len(histories[f"w{w}"]) for w in range(8)] == [100] * 8
    assert store.count() == 800


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path):
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(EventStoreError, match="damaged or not an mfrec events database"):
        SQLiteStore(path)


def test_locked_sqlite_file_is_an_error_after_the_busy_timeout(tmp_path):
    path = tmp_path / "events.sqlite"
    store = SQLiteStore(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(EventStoreError, match="held its lock for more than 0.2 s"):
            store.put_events([event("u1", "a", 1.0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.put_events([event("u1", "a", 1.0)]) == 1


def test_unreachable_redis_is_a_clear_error():
    pytest.importorskip("redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there
    with pytest.raises(EventStoreError, match="check that redis-server runs there"):
        open_store(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert "hunter2" not in redacted(f"redis://:hunter2@127.0.0.1:{port}/0")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/data/ev.sqlite", "/data/ev.sqlite"),
        ("sqlite:///data/ev.sqlite", "/data/ev.sqlite"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("off", None),
    ],
)
def test_store_location_from_the_environment(spec, expected):
    assert store_location({"MFREC_EVENTS_DB": spec}) == expected


def test_default_location_beside_the_model_else_temporary(tmp_path, caplog):
    assert store_location({}, tmp_path) == str(tmp_path / "events.sqlite")
    assert store_location({"MFREC_MODEL_DIR": str(tmp_path)}) == str(tmp_path / "events.sqlite")
    missing = tmp_path / "not-there"
    assert store_location({}, missing).endswith("mfrec-events.sqlite")
    assert "set MFREC_EVENTS_DB" in caplog.text


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"MFREC_EVENTS_DB": "sqlite:relative"}, "three slashes"),
        ({"MFREC_EVENTS_DB": "postgres://db/x"}, "redis://host:6379/0 or off"),
    ],
)
def test_bad_locations_say_how_to_fix(environ, words):
    with pytest.raises(EventStoreError, match=words):
        store_location(environ)


def test_events_per_user_is_checked():
    assert max_per_user({}) == 500 and max_per_user({"MFREC_EVENTS_PER_USER": "20"}) == 20
    with pytest.raises(EventStoreError, match="from 1 to 1000"):
        max_per_user({"MFREC_EVENTS_PER_USER": "5000"})
