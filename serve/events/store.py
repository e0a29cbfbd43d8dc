"""What an events store keeps and the interface both stores implement (SQLite, Redis).

An :class:`Event` is one of Amazon Personalize's PutEvents events with its user: stored once per
``event_id`` (a repeated id is ignored, so a retried PutEvents never counts twice), at most
``max_per_user`` per user (the oldest by ``sent_at`` are dropped first). Item metadata from
PutItems is kept beside them, with a version number that changes on every update.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

from mfrec.train.errors import MfrecError

#: Events kept per user by default (``MFREC_EVENTS_PER_USER``), and the most allowed: a
#: history longer than a request's item list (mfrec.serve.requests.MAX_LIST_LENGTH) is never read.
DEFAULT_PER_USER = 500
MAX_PER_USER = 1000


class EventStoreError(MfrecError):
    """The events database cannot be used (corrupt, locked, unreachable); the message says
    which database and what to do."""


@dataclass(frozen=True)
class Event:
    """One stored interaction.

    Attributes
    ----------
    event_id : str, unique in the store
    user_id : str
    item_id : str or None (an event about no item is kept, and never recommended from)
    event_type : str
    event_value : float or None
    sent_at : float, seconds since the epoch (Personalize's ``sentAt``)
    session_id, tracking_id : str or None
    properties : str or None, the event's JSON ``properties`` text
    """

    event_id: str
    user_id: str
    item_id: str | None
    event_type: str
    event_value: float | None
    sent_at: float
    session_id: str | None = None
    tracking_id: str | None = None
    properties: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        return cls(**json.loads(text))


class EventStore(ABC):
    """Events by user and item metadata, shared by every worker that opens the same location.

    Parameters
    ----------
    location : str, where the data lives (a path or a ``redis://`` URL), for messages
    max_per_user : int, events kept per user (older ones are dropped)
    """

    def __init__(self, location: str, max_per_user: int = DEFAULT_PER_USER) -> None:
        if not 1 <= max_per_user <= MAX_PER_USER:
            raise EventStoreError(
                f"MFREC_EVENTS_PER_USER={max_per_user} must be from 1 to {MAX_PER_USER}"
            )
        self.location, self.max_per_user = location, max_per_user

    @abstractmethod
    def put_events(self, events: Sequence[Event]) -> int:
        """Store ``events`` (one transaction); returns how many were new (not a repeated id)."""

    @abstractmethod
    def histories(self, user_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The stored item ids of each user that has any, oldest first (events without an item
        left out); users with none are absent."""

    @abstractmethod
    def put_items(self, properties: Mapping[str, Mapping[str, str]]) -> None:
        """Set the metadata of items (item id -> {field: value}), replacing what was stored."""

    @abstractmethod
    def items_version(self) -> int:
        """A number that changes whenever :meth:`put_items` changes something (0: never)."""

    @abstractmethod
    def item_properties(self) -> dict[str, dict[str, str]]:
        """Every stored item's metadata."""

    @abstractmethod
    def events(self) -> Iterator[Event]:
        """Every stored event, by user, oldest first (for export)."""

    @abstractmethod
    def count(self) -> int:
        """How many events are stored."""

    def close(self) -> None:  # noqa: B027 (optional: the stores without resources keep it)
        """Release connections (the store may be used again: they reopen)."""
