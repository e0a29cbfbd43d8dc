"""Column conversions: ids to strings, timestamps to Unix seconds, values to floats, ids to indices.

Each converter works on a whole Arrow column and returns the converted values plus a boolean
mask of the rows that could not be converted, so that the importer can name their lines.

Numeric timestamps are read in the unit their median magnitude implies: below 1e11 seconds
(1e11 s is the year 5138), below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds.
Strings are parsed as ISO-8601 (a timezone offset is honoured; none means UTC). A timestamp
that converts to a time outside the years 1 to 9999 (``253402300800``, ``-62135596801``,
``1e300``) is a bad value like an unparseable one: it is named in the error, or dropped and
counted with ``on_bad_rows=skip``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NULL_ID_MARKERS = ("", "nan", "NaN", "null", "NULL", "None")
_UNIT_DIVISORS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z, the first second Python's datetime has
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, its last
OUT_OF_RANGE = "a timestamp outside the years 1 to 9999"


@dataclass
class Converted:
    """Converted values of one column; ``bad`` marks the rows that could not be converted."""

    values: object  # numpy array or Arrow array
    bad: np.ndarray  # bool, shape (n,)
    reason: str = ""
    unit: str | None = None
    out_of_range: np.ndarray | None = None  # bool, shape (n,): timestamps outside years 1-9999

    def problems(self) -> list[tuple[str, np.ndarray]]:
        """(reason, mask) of each kind of bad row, for messages that count them apart."""
        found = [(self.reason, self.bad)]
        if self.out_of_range is not None:
            found.append((OUT_OF_RANGE, self.out_of_range))
        return found


def _as_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _bad_from(mask: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, True).to_numpy(zero_copy_only=False), dtype=bool)


def _nested(array, what: str) -> Converted | None:
    """Every row bad when the column holds JSON objects or lists (JSON lines, Parquet), which
    no converter can read as an id, number or time; None otherwise."""
    if not pa.types.is_nested(array.type):
        return None
    reason = f"{what} that is a JSON object or list ({array.type}), not a string or number"
    return Converted(np.zeros(len(array), np.int64), np.ones(len(array), bool), reason)


def to_ids(column, role: str) -> Converted:
    """Ids as int64 (integer columns of Parquet/JSON) or trimmed strings; empty ids are bad.

    Null ids, and the strings ``""``, ``"nan"``, ``"NaN"``, ``"null"``, ``"NULL"``, ``"None"``,
    are bad. Integer ids become the same strings later (:func:`factorize`); text files always
    give strings, so ``007`` and ``7`` stay different ids.
    """
    array = column
    if (nested := _nested(array, f"a {role} id")) is not None:
        return nested
    if pa.types.is_floating(array.type):
        valid = pc.drop_null(array)
        if len(valid) == 0 or pc.all(pc.equal(pc.floor(valid), valid)).as_py():
            array = pc.cast(array, pa.int64(), safe=False)  # 7.0 -> 7, not "7.0"
    if pa.types.is_integer(array.type):
        ints = pc.cast(array, pa.int64())
        return Converted(ints, _bad_from(pc.is_null(ints)), f"an empty or null {role} id")
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        array = pc.cast(pc.utf8_trim_whitespace(array), pa.string())
    else:
        array = pc.cast(array, pa.string())
    bad = pc.or_kleene(pc.is_null(array), pc.is_in(array, value_set=pa.array(NULL_ID_MARKERS)))
    return Converted(array, _bad_from(bad), f"an empty or null {role} id")


def to_float(column) -> Converted:
    """Event values as float64; nulls and non-numbers are bad."""
    array = _as_array(column)
    if (nested := _nested(array, "an event value")) is not None:
        return nested
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        values = pc.fill_null(pc.cast(array, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    elif pa.types.is_boolean(array.type):
        values = pc.fill_null(pc.cast(array, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    else:
        series = pd.Series(pc.cast(array, pa.string()).to_numpy(zero_copy_only=False), dtype=object)
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    return Converted(values, ~np.isfinite(values), "a missing or non-numeric event value")


def timestamp_unit(values: np.ndarray) -> str:
    """``"s"``, ``"ms"``, ``"us"`` or ``"ns"`` from the median magnitude of numeric times.

    The median is taken over at most ~100,000 evenly spaced values (enough to tell units
    apart, which differ by a factor of 1,000).
    """
    sample = values[:: max(1, len(values) // 100_000)]
    median = float(np.median(np.abs(sample))) if len(sample) else 0.0
    if median < 1e11:
        return "s"
    if median < 1e14:
        return "ms"
    return "us" if median < 1e17 else "ns"


def to_unix_seconds(column) -> Converted:
    """Timestamps as int64 Unix seconds (floored); nulls and unparseable values are ``bad``,
    times outside the years 1 to 9999 are ``out_of_range`` (their seconds are set to 0)."""
    converted = _to_unix_seconds(column)
    if converted.out_of_range is None:
        seconds = converted.values
        outside = ~converted.bad & ((seconds < MIN_SECONDS) | (seconds > MAX_SECONDS))
        converted.values = np.where(outside, 0, seconds)
        converted.out_of_range = outside
    return converted


def _to_unix_seconds(column) -> Converted:
    array = _as_array(column)
    if (nested := _nested(array, "a timestamp")) is not None:
        return nested
    kind = array.type
    if pa.types.is_timestamp(kind):
        ints = pc.cast(array, pa.int64()).to_numpy(zero_copy_only=False)
        bad = _bad_from(pc.is_null(array))
        seconds = np.floor_divide(np.where(bad, 0, ints), _UNIT_DIVISORS[kind.unit])
        return Converted(seconds.astype(np.int64), bad, "a missing timestamp", "datetime")
    if pa.types.is_date(kind):
        days = pc.cast(pc.cast(array, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        bad = _bad_from(pc.is_null(array))
        seconds = np.where(bad, 0, days).astype(np.int64) * 86_400
        return Converted(seconds, bad, "a missing timestamp", "date")
    if pa.types.is_integer(kind):
        bad = _bad_from(pc.is_null(array)) if array.null_count else np.zeros(len(array), bool)
        ints = pc.fill_null(array, 0).to_numpy().astype(np.int64, copy=False)
        unit = timestamp_unit(ints[~bad] if array.null_count else ints)
        seconds = ints if unit == "s" else np.floor_divide(ints, _UNIT_DIVISORS[unit])
        return Converted(seconds, bad, "a missing timestamp", unit)
    if pa.types.is_floating(kind):
        return _numeric_seconds(to_float(array).values, "a missing timestamp")
    strings = pd.Series(pc.cast(array, pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    numbers = pd.to_numeric(strings, errors="coerce").to_numpy(dtype=np.float64)
    if not len(numbers) or np.isfinite(numbers).mean() >= 0.5:
        return _numeric_seconds(numbers, "a missing or non-numeric timestamp")
    parsed = pd.to_datetime(strings, utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna().to_numpy()
    # In pandas' own unit (microseconds for most text): a cast to nanoseconds would overflow,
    # silently, for dates after 2262 or before 1677.
    unit = getattr(parsed.dt, "unit", "ns")
    ticks = parsed.to_numpy(dtype=f"datetime64[{unit}]").astype(np.int64)
    seconds = np.floor_divide(np.where(bad, 0, ticks), _UNIT_DIVISORS[unit])
    return Converted(seconds, bad, "a missing or unparseable (not ISO-8601) timestamp", "iso8601")


def _numeric_seconds(numbers: np.ndarray, reason: str) -> Converted:
    bad, finite = np.isnan(numbers), np.isfinite(numbers)
    unit = timestamp_unit(numbers[finite])
    scaled = np.floor(np.where(finite, numbers, 0) / _UNIT_DIVISORS[unit])
    # Checked as floats: 1e300 seconds would overflow the cast to int64; inf is out of range too.
    outside = ~bad & (~finite | (scaled < MIN_SECONDS) | (scaled > MAX_SECONDS))
    seconds = np.where(outside, 0, scaled).astype(np.int64)
    return Converted(seconds, bad, reason, unit, out_of_range=outside)


def factorize(ids: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous indices in order of first appearance, and the id of each index.

    Returns
    -------
    idx : ndarray of int64, shape (n,)
    uniques : ndarray of str, shape (num_unique,)
    """
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    if pa.types.is_integer(ids.type):
        ints = ids.to_numpy()
    else:
        ints = _canonical_integers(ids)
    if ints is not None:  # hashing int64 is several times faster than hashing strings
        codes, uniques = pd.factorize(ints)
        return codes.astype(np.int64, copy=False), uniques.astype(str)
    encoded = pc.dictionary_encode(_as_array(ids))
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    uniques = encoded.dictionary.to_numpy(zero_copy_only=False)
    return codes, np.asarray(uniques, dtype=str)


def _canonical_integers(ids) -> np.ndarray | None:
    """The ids as int64 when every one is a canonical decimal ("685", not "0685"), else None."""
    try:
        ints = pc.cast(ids, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # The cast also accepts leading zeros and "0x" prefixes, which would merge distinct ids.
    padded = pc.and_(pc.starts_with(ids, "0"), pc.greater(pc.binary_length(ids), 1))
    if pc.any(pc.or_(padded, pc.starts_with(ids, "-0"))).as_py():
        return None
    return ints.to_numpy()
