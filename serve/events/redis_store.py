"""The events store on a Redis server, for several hosts (a SageMaker endpoint with several
instances, a fleet behind a load balancer) that must see the same users' events.

Keys, under a prefix (``mfrec:`` by default):

=================  ==========  ==========================================================
key                type        holds
=================  ==========  ==========================================================
``e:<eventId>``    string      the event as JSON; set only if absent (idempotent ids)
``u:<userId>``     sorted set  ``<seq, 16 digits>\\0<eventId>\\0<itemId>`` by ``sentAt``
``users``          set         user ids with events (for export)
``seq``, ``count``  integers   insertion counter (ties in time keep their order), events
``items``          hash        item id -> metadata JSON; ``items_version`` counts updates
=================  ==========  ==========================================================

A PutEvents call is one Lua script, so it is atomic like SQLite's transaction; a history is one
``ZRANGE`` per user, all users of a request in one round trip. Plain Redis (not Redis Cluster:
the script touches keys it cannot declare in advance).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from mfrec.serve.events.store import DEFAULT_PER_USER, Event, EventStore, EventStoreError

_PUT = """
local prefix, limit, added = ARGV[1], tonumber(ARGV[2]), 0
for i = 3, #ARGV, 5 do
  local eid, uid, at, item, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if redis.call('SET', prefix .. 'e:' .. eid, payload, 'NX') then
    local key = prefix .. 'u:' .. uid
    local seq = redis.call('INCR', prefix .. 'seq')
    redis.call('ZADD', key, at, string.format('%016d', seq) .. '\\0' .. eid .. '\\0' .. item)
    redis.call('SADD', prefix .. 'users', uid)
    redis.call('INCR', prefix .. 'count')
    added = added + 1
    local extra = redis.call('ZCARD', key) - limit
    if extra > 0 then
      for _, member in ipairs(redis.call('ZRANGE', key, 0, extra - 1)) do
        local rest = string.sub(member, 18)
        local eid = string.sub(rest, 1, string.find(rest, '\\0', 1, true) - 1)
        redis.call('DEL', prefix .. 'e:' .. eid)
      end
      redis.call('ZREMRANGEBYRANK', key, 0, extra - 1)
      redis.call('DECRBY', prefix .. 'count', extra)
    end
  end
end
return added
"""


def redacted(url: str) -> str:
    """``url`` with its password (``redis://:secret@host``) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _member_item(member: bytes) -> str:
    """The item id in a sorted-set member ("" for an event without one)."""
    return member.split(b"\0", 2)[2].decode("utf-8")


class RedisStore(EventStore):
    """Events on the Redis server at ``url`` (``redis://host:6379/0``).

    Parameters
    ----------
    url : str
    max_per_user : int
    prefix : str, put before every key (several deployments can share a database)
    timeout : float, seconds to connect or wait for an answer before an error
    """

    def __init__(
        self,
        url: str,
        max_per_user: int = DEFAULT_PER_USER,
        prefix: str = "mfrec:",
        timeout: float = 5.0,
    ) -> None:
        super().__init__(redacted(url), max_per_user)
        try:
            import redis
        except ImportError:
            raise EventStoreError(
                f"MFREC_EVENTS_DB={self.location!r} needs the redis package: "
                "pip install 'mfrec[redis]' (or pip install redis)"
            ) from None
        self._redis_errors = (redis.exceptions.RedisError, OSError)
        self.prefix = prefix
        with self._errors("connect to"):
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self.client.ping()
            self._put = self.client.register_script(_PUT)

    def _errors(self, doing: str):
        return _Translate(self.location, doing, self._redis_errors)

    def close(self) -> None:
        self.client.close()

    def put_events(self, events: Sequence[Event]) -> int:
        args: list = [self.prefix, self.max_per_user]
        for e in events:
            args += [e.event_id, e.user_id, repr(e.sent_at), e.item_id or "", e.to_json()]
        with self._errors("store events in"):
            return int(self._put(args=args))

    def histories(self, user_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        wanted = list(dict.fromkeys(user_ids))
        with self._errors("read events from"):
            pipe = self.client.pipeline(transaction=False)
            for user_id in wanted:
                pipe.zrange(f"{self.prefix}u:{user_id}", 0, -1)
            answers = pipe.execute()
        found = {}
        for user_id, members in zip(wanted, answers, strict=True):
            items = tuple(item for item in map(_member_item, members) if item)
            if items:
                found[user_id] = items
        return found

    def events(self) -> Iterator[Event]:
        with self._errors("read events from"):
            users = sorted(u.decode("utf-8") for u in self.client.sscan_iter(f"{self.prefix}users"))
            for user_id in users:
                members = self.client.zrange(f"{self.prefix}u:{user_id}", 0, -1)
                keys = [f"{self.prefix}e:".encode() + m.split(b"\0", 2)[1] for m in members]
                for payload in self.client.mget(keys) if keys else ():
                    if payload is not None:  # trimmed by a writer meanwhile
                        yield Event.from_json(payload)

    def count(self) -> int:
        with self._errors("count events in"):
            return int(self.client.get(f"{self.prefix}count") or 0)

    def put_items(self, properties: Mapping[str, Mapping[str, str]]) -> None:
        mapping = {k: json.dumps(dict(v), sort_keys=True) for k, v in properties.items()}
        with self._errors("store items in"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(f"{self.prefix}items", mapping=mapping)
            pipe.incr(f"{self.prefix}items_version")
            pipe.execute()

    def items_version(self) -> int:
        with self._errors("read items from"):
            return int(self.client.get(f"{self.prefix}items_version") or 0)

    def item_properties(self) -> dict[str, dict[str, str]]:
        with self._errors("read items from"):
            stored = self.client.hgetall(f"{self.prefix}items")
        return {k.decode("utf-8"): json.loads(v) for k, v in stored.items()}


class _Translate:
    """``with``: Redis and socket errors as one-line :class:`EventStoreError` messages."""

    def __init__(self, url: str, doing: str, kinds: tuple) -> None:
        self.url, self.doing, self.kinds = url, doing, kinds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None or not isinstance(exc, self.kinds):
            return False
        raise EventStoreError(
            f"cannot {self.doing} the events database {self.url}: {exc}; check that "
            "redis-server runs there and MFREC_EVENTS_DB names it"
        ) from None
