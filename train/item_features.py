"""Item-side model extras written at training time and read by the server.

``item_trending`` (float64, shape (num_items,))
    Recency-weighted popularity for ``{"type": "trending"}`` requests (:func:`trending_scores`).
``item_attribute.<name>`` (str, shape (num_items,))
    One string per item from an item metadata file (Amazon Personalize's Items dataset): several
    values separated by ``|`` (``Comedy|Drama``), ``""`` for items the file does not describe
    (:func:`read_item_attributes`). The server filters on them (``include_attributes``) and
    shows ``title`` on its page.

Both are aligned to the training data's item index: entry ``i`` belongs to ``item_ids[i]``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mfrec.train.columns import ACCEPTED_NAMES, ALIASES, normalise
from mfrec.train.converters import to_ids
from mfrec.train.errors import ConfigError, DataValidationError
from mfrec.train.formats import list_input_files, sniff
from mfrec.train.interactions import Interactions
from mfrec.train.readers import read_source

logger = logging.getLogger("mfrec.train")

TRENDING = "item_trending"
ATTRIBUTE_PREFIX = "item_attribute."
HALF_LIFE_NAME = "trending_half_life_days"
DEFAULT_HALF_LIFE_DAYS = 7.0
SECONDS_PER_DAY = 86_400
MAX_ATTRIBUTE_BYTES = 512 << 20  # fixed-width text of one attribute over all items
MAX_EXAMPLES = 5
_FORMATS = "CSV/TSV (optionally .gz), Parquet or JSON lines"


def parse_half_life(text: str) -> float:
    """``trending_half_life_days`` from its hyperparameter string: a number > 0, in days.

    Raises
    ------
    ConfigError
        Not a finite number greater than 0.
    """
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{HALF_LIFE_NAME} must be a number of days greater than 0 (e.g. 7 or 0.5), got "
            f"{text!r:.40}"
        )
    return value


def trending_scores(
    interactions: Interactions, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> np.ndarray:
    """Recency-weighted interaction count of every item.

    ``score[i] = sum over the interactions r of item i of 0.5 ** (age_r / half_life_days)``,
    where ``age_r`` is the time in days from interaction ``r`` to the newest timestamp in the
    data (not to the clock: a model trained on old data still has trending items). An
    interaction at the newest time counts 1, one ``half_life_days`` older counts 0.5. Each
    interaction counts once whatever its event value, as in the ``popular`` counts. Without
    timestamps the scores are the plain counts, and a log line says so.

    Returns
    -------
    ndarray of float64, shape (num_items,)
    """
    if interactions.timestamps is None or len(interactions) == 0:
        logger.info("no timestamps: trending items are the plain interaction counts")
        return interactions.item_counts().astype(np.float64)
    timestamps = np.asarray(interactions.timestamps, dtype=np.int64)
    age_days = (timestamps.max() - timestamps) / SECONDS_PER_DAY
    weights = np.exp2(-age_days / half_life_days)
    return np.bincount(interactions.item_idx, weights=weights, minlength=interactions.num_items)


def item_extras(
    interactions: Interactions,
    items: str | Path | None = None,
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
) -> dict[str, np.ndarray]:
    """The artifact extras of this module: ``item_trending``, and ``item_attribute.<name>``
    for every attribute column of the metadata file or folder ``items`` (when given)."""
    extras = {TRENDING: trending_scores(interactions, half_life_days)}
    if items is not None:
        attributes = read_item_attributes(items, interactions.item_ids)
        extras.update({ATTRIBUTE_PREFIX + name: v for name, v in attributes.items()})
    return extras


def read_item_attributes(path: str | Path, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Read item metadata and align it to ``item_ids`` (the training data's item index).

    ``path`` is a file or a folder read recursively; every file is CSV/TSV or other delimited
    text (optionally gzip-compressed), Parquet or JSON lines, with a header. The item id column
    is found by name as in the interactions (``item_id``, ``ITEM_ID``, ``itemId``, ``movieId``,
    ...); every other column is an attribute, named as in the header, its values kept as text
    (list values of Parquet/JSON joined with ``|``). Rows of items that are not in ``item_ids``
    are ignored and counted in a log line; items without a row get ``""``.

    Returns
    -------
    dict of str to ndarray of str, shape (num_items,)
        Attribute name → one value per training item.

    Raises
    ------
    DataValidationError
        No readable file, no header or no item id column, unparseable rows, empty or duplicate
        item ids, no attribute column; the message says how to fix it.
    """
    try:
        files, skipped = list_input_files(path)
    except DataValidationError as exc:
        raise DataValidationError(
            f"no item metadata file found at {path} ({exc}). The items channel (--items locally) "
            f"needs {_FORMATS} files with an item_id column and attribute columns."
        ) from None
    if skipped:
        logger.info("item metadata: skipped %s", "; ".join(skipped))
    parts = [part for file in files if (part := _read_file(Path(path), file)) is not None]
    if not parts:
        raise DataValidationError(f"every item metadata file under {path} is empty; upload them.")
    meta_ids, columns = _combine(parts)
    duplicated = pd.Index(meta_ids).duplicated()
    if duplicated.any():
        examples = ", ".join(repr(i) for i in pd.unique(meta_ids[duplicated])[:MAX_EXAMPLES])
        raise DataValidationError(
            f"item metadata under {path} has {int(duplicated.sum())} repeated item id(s) "
            f"(e.g. {examples}); keep one row per item."
        )
    row = pd.Index(meta_ids).get_indexer(np.asarray(item_ids, dtype=str))
    known = row >= 0
    values = {}
    for name, column in columns.items():
        aligned = np.full(len(row), "", dtype=object)
        aligned[known] = column[row[known]]
        longest = max((len(v) for v in column), default=0)
        if len(row) * max(longest, 1) * 4 > MAX_ATTRIBUTE_BYTES:
            logger.warning(
                "item metadata: attribute %r left out: its longest value has %d characters, "
                "too long to store for %d items as fixed-width text (filters want short "
                "values such as a genre)",
                name,
                longest,
                len(row),
            )
            continue
        values[name] = aligned.astype(str)
    ignored = len(meta_ids) - int(known.sum())
    logger.info(
        "item metadata from %s: %d rows, attributes %s; %d of %d training items described; "
        "ignored %d rows of items that are not in the training interactions",
        path,
        len(meta_ids),
        ", ".join(values) or "none",
        int(known.sum()),
        len(row),
        ignored,
    )
    return values


def _read_file(root: Path, file: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(item ids, attribute name → values) of one metadata file, or None when it is empty."""
    name = str(file.relative_to(root)) if root.is_dir() else file.name
    try:
        source = sniff(file)
    except DataValidationError as exc:
        raise DataValidationError(f"item metadata file {name}: {exc}") from None
    if source is None:
        return None
    names = {str(column).strip(): column for column in source.column_names if str(column).strip()}
    item_column = _item_column(list(names))
    if item_column is None or not source.has_header:
        found = ", ".join(list(names)[:10])
        raise DataValidationError(
            f"item metadata file {name} has no item id column (columns: {found}); give it a "
            f"header row naming the item id column ({ACCEPTED_NAMES['item']}) and the "
            f"attributes, e.g. item_id,title,genre."
        )
    stripped = [str(column).strip() for column in source.column_names]
    repeated = sorted({n for n in stripped if n and stripped.count(n) > 1})
    if repeated:
        raise DataValidationError(
            f"item metadata file {name} has repeated column names ({', '.join(repeated)}); "
            f"give every column its own name."
        )
    wanted = list(names.values())  # unnamed columns (a trailing delimiter) are dropped
    raw = read_source(source, wanted, wanted)
    if raw.bad_row_count:
        raise DataValidationError(
            f"item metadata file {name}: {raw.bad_row_count} row(s) cannot be parsed: "
            f"{'; '.join(raw.bad_row_examples)}. Every row needs one value per header column "
            f"(quote values that contain the delimiter)."
        )
    ids = to_ids(raw.table.column(names[item_column]).combine_chunks(), "item")
    if ids.bad.any():
        where = ", ".join(raw.locate(np.flatnonzero(ids.bad)[:MAX_EXAMPLES].tolist()))
        raise DataValidationError(
            f"item metadata file {name}: {int(ids.bad.sum())} row(s) have an empty item id "
            f"({where}); fill in the ids or remove those rows."
        )
    ids = ids.values.cast(pa.string()).to_numpy(zero_copy_only=False)
    attributes = {
        attribute: _as_text(raw.table.column(column))
        for attribute, column in names.items()
        if attribute != item_column
    }
    if not attributes:
        raise DataValidationError(
            f"item metadata file {name} has only the item id column; add attribute columns "
            f"such as title or genre."
        )
    return ids.astype(object), attributes


def _item_column(names: list[str]) -> str | None:
    """The header name that spells the item id, best alias first."""
    by_alias = {normalise(n): n for n in reversed(names)}
    return next((by_alias[a] for a in ALIASES["item"] if a in by_alias), None)


def _as_text(column: pa.ChunkedArray) -> np.ndarray:
    """Any Arrow column as trimmed strings (object array); lists joined with ``|``, nulls ``""``."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_null(array.type):
        return np.full(len(array), "", dtype=object)
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        array = pc.binary_join(pc.cast(array, pa.list_(pa.string())), "|")
    else:
        array = pc.cast(array, pa.string())
    text = pc.fill_null(pc.utf8_trim_whitespace(array), "")
    return np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)


def _combine(parts) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows of all files; an attribute a file lacks is ``""`` for that file's items."""
    names = list(dict.fromkeys(name for _, attributes in parts for name in attributes))
    ids = np.concatenate([part_ids for part_ids, _ in parts])
    columns = {
        name: np.concatenate(
            [attrs.get(name, np.full(len(part_ids), "", dtype=object)) for part_ids, attrs in parts]
        )
        for name in names
    }
    return ids, columns
