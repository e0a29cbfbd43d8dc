"""Events from Amazon Personalize's PutEvents (and item metadata from PutItems), stored in a real
database and used by the next recommendation of the same user.

=============================  =============================================================
``MFREC_EVENTS_DB``            where events live
=============================  =============================================================
unset                          ``events.sqlite`` in the model folder when it is writable,
                               else ``$TMPDIR/mfrec-events.sqlite`` (with a warning: a
                               temporary folder may be emptied)
``/path/events.sqlite``,       that SQLite file (WAL mode, shared by every worker of a host)
``sqlite:///path``
``redis://host:6379/0``        a Redis server, shared by several hosts
``off``                        no events API, and recommendations read no events
=============================  =============================================================

``MFREC_EVENTS_PER_USER`` (default 500, at most 1000) bounds the events kept per user.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping

from mfrec.serve.events.store import (
    DEFAULT_PER_USER,
    MAX_PER_USER,
    Event,
    EventStore,
    EventStoreError,
)

__all__ = [
    "DEFAULT_PER_USER",
    "Event",
    "EventStore",
    "EventStoreError",
    "MAX_PER_USER",
    "open_store",
    "store_location",
]

logger = logging.getLogger(__name__)

ENV_DB, ENV_PER_USER = "MFREC_EVENTS_DB", "MFREC_EVENTS_PER_USER"
MODEL_DIR = "MFREC_MODEL_DIR"  # set by `mfrec serve`: the model folder, the default place
OFF = ("off", "none", "false", "no", "0")
DEFAULT_FILE = "events.sqlite"
TEMP_FILE = "mfrec-events.sqlite"


def store_location(
    environ: Mapping[str, str] | None = None, model_dir: str | os.PathLike | None = None
) -> str | None:
    """Where the events live (a path or a ``redis://`` URL), or None when they are off.

    ``model_dir`` (else ``$MFREC_MODEL_DIR``, set by ``mfrec serve``) is the default folder.
    """
    env = os.environ if environ is None else environ
    spec = env.get(ENV_DB, "").strip()
    if spec.lower() in OFF and spec:
        return None
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return spec
    if spec.startswith("sqlite:///"):
        return spec[len("sqlite://") :]
    if spec.startswith("sqlite:"):
        raise EventStoreError(
            f"{ENV_DB}={spec!r}: write sqlite:///absolute/path (three slashes) or a plain path"
        )
    if "://" in spec:
        raise EventStoreError(
            f"{ENV_DB}={spec!r}: use a file path, sqlite:///path, redis://host:6379/0 or off"
        )
    if spec:
        return spec
    folder = model_dir or env.get(MODEL_DIR, "").strip()
    if folder and os.path.isdir(folder) and os.access(folder, os.W_OK):
        return os.path.join(folder, DEFAULT_FILE)
    path = os.path.join(tempfile.gettempdir(), TEMP_FILE)
    logger.warning(
        "events are stored in %s (the model folder %s is not writable); a temporary folder may "
        "be emptied: set %s to a lasting path or a redis:// URL",
        path,
        folder or "(unknown)",
        ENV_DB,
    )
    return path


def max_per_user(environ: Mapping[str, str] | None = None) -> int:
    """``MFREC_EVENTS_PER_USER``, checked."""
    text = (os.environ if environ is None else environ).get(ENV_PER_USER, "").strip()
    try:
        value = int(text) if text else DEFAULT_PER_USER
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PER_USER:
        raise EventStoreError(
            f"{ENV_PER_USER}={text!r} must be an integer from 1 to {MAX_PER_USER}"
        )
    return value


def open_store(location: str, per_user: int = DEFAULT_PER_USER) -> EventStore:
    """The store at ``location`` (from :func:`store_location`).

    Raises
    ------
    EventStoreError
        It cannot be opened (the message says why and what to do).
    """
    if location.startswith(("redis://", "rediss://", "unix://")):
        from mfrec.serve.events.redis_store import RedisStore

        return RedisStore(location, per_user)
    from mfrec.serve.events.sqlite_store import SQLiteStore

    return SQLiteStore(location, per_user)
