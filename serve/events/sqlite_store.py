"""The events store in one SQLite file in WAL mode, shared by every gunicorn worker of a host.

WAL lets readers go on while one writer commits; ``synchronous=FULL`` makes a committed PutEvents
survive a power cut, not only a crash of the server. Each thread of each process has its own
connection (SQLite connections must not cross a fork or, by default, a thread). A writer that
finds the file locked waits at most ``busy_timeout`` seconds, then gets
:class:`EventStoreError`: a locked or corrupt file is an error that says so, never a hang.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence

from mfrec.serve.events.store import DEFAULT_PER_USER, Event, EventStore, EventStoreError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT,
    event_type TEXT NOT NULL,
    event_value REAL,
    sent_at REAL NOT NULL,
    session_id TEXT,
    tracking_id TEXT,
    properties TEXT
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, sent_at, seq);
CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, properties TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COLUMNS = (
    "event_id, user_id, item_id, event_type, event_value, sent_at, session_id, tracking_id, "
    "properties"
)
_CHUNK = 500  # user ids per IN (...) query: under SQLite's bound-parameter limit


class SQLiteStore(EventStore):
    """Events in the SQLite file ``path`` (created with its folder when missing).

    Parameters
    ----------
    path : str or path
    max_per_user : int
    busy_timeout : float, seconds a statement waits for another process's lock
    """

    def __init__(
        self, path, max_per_user: int = DEFAULT_PER_USER, busy_timeout: float = 5.0
    ) -> None:
        super().__init__(str(path), max_per_user)
        self.path, self.busy_timeout = str(path), busy_timeout
        self._local = threading.local()
        self._pid = os.getpid()
        with self._errors("open"):
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            connection = self._connection()
            if connection.execute("PRAGMA user_version").fetchone()[0] > SCHEMA_VERSION:
                raise EventStoreError(
                    f"the events database {self.path} was written by a newer mfrec; "
                    "upgrade mfrec or point MFREC_EVENTS_DB at another file"
                )
            connection.executescript(SCHEMA)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connections and errors ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # forked: the parent's connections are not ours
            self._local, self._pid = threading.local(), os.getpid()
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            self._local.connection = connection
        return connection

    def _errors(self, doing: str):
        return _Translate(self.path, doing, self.busy_timeout)

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # -- events -------------------------------------------------------------------------------

    def put_events(self, events: Sequence[Event]) -> int:
        rows = [
            (
                e.event_id,
                e.user_id,
                e.item_id,
                e.event_type,
                e.event_value,
                e.sent_at,
                e.session_id,
                e.tracking_id,
                e.properties,
            )
            for e in events
        ]
        with self._errors("store events in"):
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                before = connection.total_changes
                connection.executemany(
                    f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows
                )
                added = connection.total_changes - before
                for user_id in {e.user_id for e in events}:
                    connection.execute(
                        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE user_id = ?"
                        " ORDER BY sent_at DESC, seq DESC LIMIT -1 OFFSET ?)",
                        (user_id, self.max_per_user),
                    )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return added

    def histories(self, user_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, list[str]] = {}
        with self._errors("read events from"):
            connection = self._connection()
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for user_id, item_id in connection.execute(
                    f"SELECT user_id, item_id FROM events WHERE user_id IN ({marks}) "
                    "AND item_id IS NOT NULL ORDER BY user_id, sent_at, seq",
                    chunk,
                ):
                    found.setdefault(user_id, []).append(item_id)
        return {user_id: tuple(items) for user_id, items in found.items()}

    def events(self) -> Iterator[Event]:
        with self._errors("read events from"):
            cursor = self._connection().execute(
                f"SELECT {_COLUMNS} FROM events ORDER BY user_id, sent_at, seq"
            )
            for row in cursor:
                yield Event(*row)

    def count(self) -> int:
        with self._errors("count events in"):
            return self._connection().execute("SELECT COUNT(*) FROM events").fetchone()[0]

    # -- items --------------------------------------------------------------------------------

    def put_items(self, properties: Mapping[str, Mapping[str, str]]) -> None:
        rows = [(item_id, json.dumps(dict(p), sort_keys=True)) for item_id, p in properties.items()]
        with self._errors("store items in"):
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany("INSERT OR REPLACE INTO items VALUES (?, ?)", rows)
                connection.execute(
                    "INSERT INTO counters VALUES ('items', 1) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + 1"
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def items_version(self) -> int:
        with self._errors("read items from"):
            row = (
                self._connection()
                .execute("SELECT value FROM counters WHERE name = 'items'")
                .fetchone()
            )
        return row[0] if row else 0

    def item_properties(self) -> dict[str, dict[str, str]]:
        with self._errors("read items from"):
            rows = self._connection().execute("SELECT item_id, properties FROM items").fetchall()
        return {item_id: json.loads(text) for item_id, text in rows}


class _Translate:
    """``with``: sqlite3's errors as one-line :class:`EventStoreError` messages that name the
    file and the fix."""

    def __init__(self, path: str, doing: str, busy_timeout: float) -> None:
        self.path, self.doing, self.busy_timeout = path, doing, busy_timeout

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None or isinstance(exc, EventStoreError):
            return False
        where = f"the events database {self.path}"
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            message = (
                f"cannot {self.doing} {where}: another process held its lock for more than "
                f"{self.busy_timeout:g} s; stop the other program using it, or give each server "
                "its own MFREC_EVENTS_DB"
            )
        elif isinstance(exc, sqlite3.DatabaseError):
            message = (
                f"cannot {self.doing} {where}: {text} (the file is damaged or not an mfrec "
                "events database); move it away to start a new one, or point MFREC_EVENTS_DB "
                "at another file"
            )
        elif isinstance(exc, OSError):
            message = f"cannot {self.doing} {where}: {exc.strerror or exc}; check the folder"
        else:
            return False
        raise EventStoreError(message) from None
