"""Item metadata files (Amazon Personalize's Items dataset): one text attribute per column.

:func:`read_item_attributes` reads a file or folder and aligns it to the training data's item
index; :mod:`mfrec.train.item_features` stores the result in the artifact.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.columns import ACCEPTED_NAMES, ALIASES, normalise
from mfrec.train.ingest.converters import to_ids
from mfrec.train.ingest.formats import list_input_files, sniff
from mfrec.train.ingest.movielens import movielens_kind, read_movielens_items
from mfrec.train.ingest.readers import read_source

logger = logging.getLogger(__name__)

MAX_ATTRIBUTE_BYTES = 512 << 20  # fixed-width text of one attribute over all items
MAX_EXAMPLES = 5
_FORMATS = "CSV/TSV (optionally .gz), Parquet or JSON lines"


def read_item_attributes(path: str | Path, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Read item metadata and align it to ``item_ids`` (the training data's item index).

    ``path`` is a file or a folder read recursively; every file is CSV/TSV or other delimited
    text (optionally gzip-compressed), Parquet or JSON lines, with a header, or one of
    MovieLens's own item files (``u.item``, ``movies.dat``: see :mod:`.movielens`). The item id
    column is found by name as in the interactions (``item_id``, ``ITEM_ID``, ``itemId``,
    ``movieId``, ...); every other column is an attribute, named as in the header, its values
    kept as text (list values of Parquet/JSON joined with ``|``). Rows of items that are not in
    ``item_ids`` are ignored and counted in a log line; items without a row get ``""``.

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
    if (kind := movielens_kind(source)) is not None:
        return read_movielens_items(source, kind, name)
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
    try:
        if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            array = pc.binary_join(pc.cast(array, pa.list_(pa.string())), "|")
        else:
            array = pc.cast(array, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # JSON objects: kept as JSON text
        texts = [None if v is None else json.dumps(v, default=str) for v in array.to_pylist()]
        array = pa.array(texts, pa.string())
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
