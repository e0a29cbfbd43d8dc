"""Which column of a file is the user, the item, the timestamp, the event value and the type.

Header names are compared after lower-casing and dropping everything but letters and digits, so
``user_id``, ``USER_ID``, ``userId``, ``userID`` and ``User ID`` are the same name. Explicit
column names from :class:`~mfrec.train.ingest.importer.ImportOptions` always win over detection.

Files without a header get the names ``column_1``, ``column_2``, ... and this positional rule:

=========  ====================================================================================
columns    meaning
=========  ====================================================================================
2          user, item
3          user, item, then a timestamp if the third column looks like one (every sampled value
           is a number >= 1e8, i.e. after March 1973 in Unix seconds, or an ISO-8601 date),
           otherwise an event value
4          user, item, event value, timestamp (MovieLens ``u.data`` / ``ratings.dat``); swapped to
           user, item, timestamp, value when only the third column looks like a timestamp
5 or more  refused: name the columns (``user_column=column_1`` ...) or add a header row
=========  ====================================================================================
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from mfrec.train.errors import DataValidationError

ROLES = ("user", "item", "timestamp", "value", "event_type")

# Accepted header spellings per role, normalised (see ``normalise``), best match first.
ALIASES: dict[str, tuple[str, ...]] = {
    "user": tuple("userid user users uid customerid customer visitorid memberid".split()),
    "item": tuple(
        "itemid item items iid movieid movie artistid artist trackid track songid song productid "
        "product sku bookid isbn contentid videoid articleid".split()
    ),
    "timestamp": tuple("timestamp ts time datetime eventtime unixtime date".split()),
    "value": tuple("eventvalue value rating ratings weight score count playcount plays".split()),
    "event_type": tuple("eventtype type event action interactiontype".split()),
}

#: The header spellings shown in error messages, one readable example list per role.
ACCEPTED_NAMES: dict[str, str] = {
    "user": "user_id, USER_ID, userId, userID, user, customer_id, visitor_id",
    "item": "item_id, ITEM_ID, itemId, movieId, artistID, item, track_id, product_id, sku",
    "timestamp": "timestamp, TIMESTAMP, ts, time, datetime, date",
    "value": "event_value, EVENT_VALUE, rating, weight, value, score, count",
    "event_type": "event_type, EVENT_TYPE, type, event, action",
}

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
TIMESTAMP_MIN_SECONDS = 1e8  # 1973-03-03: smaller numbers are read as values, not Unix times


def normalise(name: str) -> str:
    """``"User ID"``, ``"user_id"``, ``"USER-ID"`` -> ``"userid"``."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def is_known_name(name: str) -> bool:
    return any(normalise(name) in aliases for aliases in ALIASES.values())


def positional_names(num_columns: int) -> list[str]:
    return [f"column_{i + 1}" for i in range(num_columns)]


@dataclass(frozen=True)
class ColumnMap:
    """Source column name per role (``None`` when the file has no such column)."""

    user: str
    item: str
    timestamp: str | None = None
    value: str | None = None
    event_type: str | None = None
    ignored: tuple[str, ...] = ()
    how: str = "header"  # "header", "explicit" or the headerless rule that was applied
    notes: tuple[str, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, str | None]:
        return {role: getattr(self, role) for role in ROLES}

    def describe(self) -> str:
        used = ", ".join(f"{role}={name!r}" for role, name in self.as_dict().items() if name)
        text = f"{used} ({self.how})"
        if self.ignored:
            text += f"; ignored: {', '.join(self.ignored)}"
        return text


def looks_like_timestamp(values: Sequence[str]) -> bool:
    """True when every sampled value is a Unix time (>= 1e8) or starts like an ISO-8601 date."""
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return False
    if all(_ISO_DATE.match(v) for v in values):
        return True
    try:
        return all(float(v) >= TIMESTAMP_MIN_SECONDS for v in values)
    except ValueError:
        return False


def map_columns(
    names: Sequence[str],
    explicit: dict[str, str | None],
    *,
    has_header: bool,
    sample_rows: Sequence[Sequence[str]] = (),
    source: str = "",
) -> ColumnMap:
    """Decide the role of each column.

    Parameters
    ----------
    names : column names of the file (``column_1`` ... for a headerless file).
    explicit : role -> column name given by the user (``None`` = detect).
    has_header : whether ``names`` came from a header (else the positional rule applies).
    sample_rows : the first data rows as strings, used by the positional rule.
    source : file name for messages.
    """
    names = list(names)
    repeated = sorted({n for n in names if str(n).strip() and names.count(n) > 1})
    if repeated and has_header:
        raise DataValidationError(
            f"{source}: the header repeats the column name(s) {', '.join(map(repr, repeated))} "
            f"(columns: {', '.join(map(repr, names))}), so mfrec cannot tell which one is meant. "
            f"Give every column its own name."
        )
    given = {role: name for role, name in explicit.items() if name}
    for role, name in given.items():
        if name not in names:
            raise DataValidationError(
                f"{source}: the {role} column {name!r} given in the options is not in the file; "
                f"its columns are: {', '.join(names)}. Fix the column name option."
            )
    if has_header:
        roles, how = _roles_from_header(names, given), "header"
    else:
        roles, how = _roles_from_position(names, given, sample_rows, source)
    if given:
        how = f"{how}, explicit names for {', '.join(sorted(given))}"
    missing = [role for role in ("user", "item") if not roles.get(role)]
    if missing:
        wanted = "; ".join(f"{role}: {ACCEPTED_NAMES[role]}" for role in missing)
        raise DataValidationError(
            f"{source}: no recognisable {' or '.join(missing)} column among the columns found "
            f"({', '.join(map(repr, names))}). Accepted names (any case, with or without "
            f"underscores) are {wanted}. Rename the column or pass it explicitly, e.g. "
            f"--{missing[0]}-column NAME (hyperparameter {missing[0]}_column); if the file "
            f"holds no interactions, move it out of the data folder."
        )
    used = set(roles.values())
    return ColumnMap(
        **roles,
        ignored=tuple(n for n in names if n not in used),
        how=how,
    )


def _roles_from_header(names: list[str], given: dict[str, str]) -> dict[str, str]:
    roles = dict(given)
    taken = set(given.values())
    for role, aliases in ALIASES.items():
        if role in roles:
            continue
        candidates = [
            (aliases.index(normalise(n)), i, n)
            for i, n in enumerate(names)
            if n not in taken and normalise(n) in aliases
        ]
        if candidates:
            name = min(candidates)[2]
            roles[role] = name
            taken.add(name)
    return roles


def _roles_from_position(
    names: list[str],
    given: dict[str, str],
    sample_rows: Sequence[Sequence[str]],
    source: str,
) -> tuple[dict[str, str], str]:
    if "user" in given and "item" in given:
        return dict(given), "headerless, columns named in the options"
    n = len(names)

    def column(i: int) -> list[str]:
        return [row[i] for row in sample_rows if len(row) > i]

    if n == 2:
        roles, how = {"user": names[0], "item": names[1]}, "headerless rule: 2 columns = user, item"
    elif n == 3:
        third = "timestamp" if looks_like_timestamp(column(2)) else "value"
        roles = {"user": names[0], "item": names[1], third: names[2]}
        how = f"headerless rule: 3 columns = user, item, {third} (decided by its values)"
    elif n == 4:
        if looks_like_timestamp(column(2)) and not looks_like_timestamp(column(3)):
            roles = {"user": names[0], "item": names[1], "timestamp": names[2], "value": names[3]}
            how = "headerless rule: 4 columns = user, item, timestamp, value (swapped by values)"
        else:
            roles = {"user": names[0], "item": names[1], "value": names[2], "timestamp": names[3]}
            how = "headerless rule: 4 columns = user, item, value, timestamp"
    else:
        raise DataValidationError(
            f"{source}: the file has no header and {n} columns, so mfrec cannot tell which is "
            f"which. Add a header row (e.g. user_id,item_id,timestamp) or name the columns, e.g. "
            f"--user-column column_1 --item-column column_2 --timestamp-column column_3."
        )
    taken = set(given.values())
    roles = {role: name for role, name in roles.items() if name not in taken}
    roles.update(given)
    return roles, how
