"""Import user-item interactions from a file or a folder, with checks and a data report.

>>> data, report = load_interactions("ratings/", ImportOptions(min_event_value=3.5))
>>> print(report.summary())

Steps: list the files (:mod:`.formats`), sniff and read each one with pyarrow
(:mod:`.readers`), map its columns to roles (:mod:`.columns`), convert
ids, timestamps and values (:mod:`.converters`), then apply the options in this
order: keep ``event_types``, keep ``event_value >= min_event_value``, weight by event type, map
ids to indices, apply the ``duplicates`` policy. ``weights`` = event value (1 when the data have
none) x event-type weight (1 when none is given); ``None`` when neither exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mfrec.train.errors import ConfigError, DataValidationError
from mfrec.train.ingest.columns import map_columns
from mfrec.train.ingest.converters import factorize, to_float, to_ids, to_unix_seconds
from mfrec.train.ingest.formats import list_input_files, sniff
from mfrec.train.ingest.options import ImportOptions
from mfrec.train.ingest.readers import read_source
from mfrec.train.ingest.report import DataReport, ImportStats, build_report
from mfrec.train.interactions import Interactions

logger = logging.getLogger(__name__)

# Role -> column name of the normalised table.
CANONICAL = {
    "user": "user_id",
    "item": "item_id",
    "timestamp": "timestamp",
    "value": "event_value",
    "event_type": "event_type",
}


def load_interactions(
    path: str | Path,
    options: ImportOptions | None = None,
    check_minimums: bool = True,
    log_warnings: bool = True,
) -> tuple[Interactions, DataReport]:
    """Read, check and convert every interaction file under ``path``.

    Parameters
    ----------
    path : a file, or a folder read recursively.
    options : see :class:`ImportOptions`.
    check_minimums : refuse data below Amazon Personalize's hard minimum (1,000 interactions;
        25 users with at least 2 interactions each); otherwise only warn.
    log_warnings : log the report's warnings (False when the caller prints the report, which
        lists them, so that they are said once).

    Returns
    -------
    data : Interactions, ids mapped to contiguous indices in order of first appearance.
    report : DataReport, also carried by a refusal as ``DataValidationError.report``.

    Raises
    ------
    DataValidationError
        With a message saying what is wrong and how to fix it.
    """
    options = options or ImportOptions()
    stats = ImportStats(source=str(path), options=options.to_dict())
    files, stats.skipped_files = list_input_files(path)
    tables = []
    for file in files:
        table = _read_file(Path(path), file, options, stats)
        if table is not None:
            tables.append(table)
    if not tables:
        raise DataValidationError(
            f"every file under {path} is empty ({', '.join(map(str, files[:5]))}); "
            f"upload the interaction files again."
        )
    table = _concat(tables, stats)
    table, weights = _filter_and_weigh(table, options, stats)
    data = _to_interactions(table, weights, options, stats)
    report = build_report(data, stats)
    logger.info(
        "imported %s interactions of %s users and %s items from %s (%s)",
        f"{len(data):,}",
        f"{data.num_users:,}",
        f"{data.num_items:,}",
        path,
        stats.dropped_summary(),
    )
    for warning in report.warnings if log_warnings else ():
        logger.warning("%s", warning)
    refusal = report.refusal()
    if refusal and check_minimums:
        raise DataValidationError(refusal, report=report)
    if refusal:
        report.warnings.append(refusal)
    return data, report


def _read_file(root: Path, file: Path, options: ImportOptions, stats: ImportStats):
    name = str(file.relative_to(root)) if file != root and root.is_dir() else file.name
    source = sniff(file, options.header)
    if source is None:
        stats.skipped_files.append(f"{name} (empty)")
        return None
    cmap = map_columns(
        source.column_names,
        options.column_names(),
        has_header=source.has_header,
        sample_rows=source.sample_rows,
        source=name,
    )
    roles = {role: col for role, col in cmap.as_dict().items() if col}
    text_columns = [roles[r] for r in ("user", "item", "event_type") if r in roles]
    raw = read_source(source, list(roles.values()), text_columns)
    logger.info("%s: %s; columns %s", name, raw.source.describe(), cmap.describe())
    if raw.bad_row_count and options.on_bad_rows == "error":
        raise DataValidationError(
            f"{name}: {raw.bad_row_count} row(s) cannot be parsed: "
            f"{'; '.join(raw.bad_row_examples)}. Fix them, or pass --on-bad-rows skip "
            f"(hyperparameter on_bad_rows=skip) to drop such rows."
        )
    table, bad_counts, examples = _convert(raw, roles, name)
    problems = sum(bad_counts.values())
    if problems and options.on_bad_rows == "error":
        counts = ", ".join(f"{n} with {reason}" for reason, n in bad_counts.items())
        raise DataValidationError(
            f"{name}: {problems} row(s) have bad values ({counts}): {'; '.join(examples)}. "
            f"Ids must be non-empty, values numbers, timestamps Unix seconds/milliseconds or "
            f"ISO-8601 within the years 1 to 9999. Fix the data, or pass --on-bad-rows skip "
            f"(hyperparameter on_bad_rows=skip) to drop such rows."
        )
    present = {role: col for role, col in roles.items() if CANONICAL[role] in table.column_names}
    stats.add_file(name, raw, cmap, present, bad_counts, examples)
    return table


def _convert(raw, roles: dict[str, str], name: str):
    """Canonical columns of one file; rows with bad values dropped and counted."""
    n = raw.table.num_rows
    columns, bad_any, bad_counts, examples = {}, np.zeros(n, dtype=bool), {}, []
    converters = {"user": lambda c: to_ids(c, "user"), "item": lambda c: to_ids(c, "item")}
    converters.update(timestamp=to_unix_seconds, value=to_float)
    for role, column in roles.items():
        data = raw.table.column(column)
        if role in ("timestamp", "value", "event_type") and data.null_count == n and n:
            logger.info("%s: column %r is empty everywhere; treated as absent", name, column)
            continue
        if role == "event_type":
            columns[role] = pc.fill_null(pc.cast(data, pa.string()), "")
            continue
        converted = converters[role](data)
        columns[role] = converted.values
        if role == "timestamp":
            columns["timestamp_unit"] = converted.unit
        for reason, bad in converted.problems():
            new_bad = bad & ~bad_any
            if new_bad.any():
                rows = np.flatnonzero(new_bad)[:3]
                bad_counts[reason] = int(new_bad.sum())
                values = _examples(raw.table.column(column), rows)
                for where, value in zip(raw.locate(rows.tolist()), values, strict=True):
                    examples.append(f"{where}: {role} {value!r}")
                bad_any |= bad
    unit = columns.pop("timestamp_unit", None)
    table = pa.table({CANONICAL[role]: values for role, values in columns.items()})
    if bad_any.any():
        table = table.filter(pa.array(~bad_any))
    return table.replace_schema_metadata({"timestamps_unit": unit or ""}), bad_counts, examples[:5]


def _examples(column: pa.ChunkedArray, rows: np.ndarray) -> list:
    """The values at ``rows`` as Python objects for messages; Arrow dates and times as their
    integer and unit, since Python's datetime cannot hold years past 9999."""
    values = column.take(pa.array(rows))
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        unit = getattr(column.type, "unit", "days")
        integers = pc.cast(values, pa.int64() if unit != "days" else pa.int32())
        return [RawNumber(f"{v} ({unit})") for v in integers.to_pylist()]
    return values.to_pylist()


class RawNumber(str):
    """A message's example value shown as is, without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _concat(tables: list[pa.Table], stats: ImportStats) -> pa.Table:
    column_sets = {tuple(t.column_names) for t in tables}
    if len(column_sets) > 1:
        described = "; ".join(f"{f['name']}: {', '.join(f['columns'])}" for f in stats.files)
        raise DataValidationError(
            f"the files do not all have the same kinds of columns ({described}). Give every "
            f"file the same columns, or import them separately."
        )
    units = sorted(
        {(t.schema.metadata or {}).get(b"timestamps_unit", b"").decode() for t in tables}
    )
    stats.timestamps_unit = ",".join(u for u in units if u) or None
    if stats.timestamps_unit and stats.timestamps_unit != "s":
        logger.info("timestamps read as %s and converted to Unix seconds", stats.timestamps_unit)
    tables = [t.replace_schema_metadata(None) for t in tables]
    for name in ("user_id", "item_id"):
        if len({t.schema.field(name).type for t in tables}) > 1:  # integer ids in some files
            tables = [
                t.set_column(t.schema.get_field_index(name), name, pc.cast(t[name], pa.string()))
                for t in tables
            ]
    return pa.concat_tables(tables)


def _filter_and_weigh(table: pa.Table, options: ImportOptions, stats: ImportStats):
    names = table.column_names
    if options.event_types or options.event_type_weights:
        _require(names, "event_type", "event_types/event_type_weights", stats)
    if options.event_types:
        keep = pc.is_in(table["event_type"], value_set=pa.array(options.event_types))
        stats.dropped["event type not kept"] = table.num_rows - pc.sum(keep).as_py()
        table = table.filter(keep)
    if options.min_event_value is not None:
        _require(names, "event_value", "min_event_value", stats)
        keep = pc.greater_equal(table["event_value"], options.min_event_value)
        stats.dropped[f"event value below {options.min_event_value:g}"] = (
            table.num_rows - pc.sum(keep).as_py()
        )
        table = table.filter(keep)
    if "event_type" in names:
        stats.event_type_counts = {
            row["values"]: row["counts"] for row in pc.value_counts(table["event_type"]).to_pylist()
        }
    weights = None
    if "event_value" in names:
        weights = table["event_value"].to_numpy().astype(np.float32)
    if options.event_type_weights:
        type_weights = options.type_weights
        unweighted = sorted(set(stats.event_type_counts) - set(type_weights))
        if unweighted:
            stats.warnings.append(
                f"event types without a weight in event_type_weights get weight 1: "
                f"{', '.join(unweighted[:10])}"
            )
        keys, values = pa.array(list(type_weights)), np.array(list(type_weights.values()))
        position = pc.index_in(table["event_type"], value_set=keys).to_numpy(zero_copy_only=False)
        found = ~np.isnan(position.astype(float))
        factor = np.ones(table.num_rows, dtype=np.float32)
        factor[found] = values[position[found].astype(np.int64)]
        weights = factor if weights is None else weights * factor
    return table, weights


def _require(names, column: str, option: str, stats: ImportStats) -> None:
    if column not in names:
        found = ", ".join(stats.files[0]["columns"]) if stats.files else "none"
        flag = {"event_value": "--value-column", "event_type": "--event-type-column"}[column]
        raise ConfigError(
            f"{option} needs an {column} column, but none was found (columns: {found}). Name "
            f"it with {flag} or remove the option."
        )


def _to_interactions(table, weights, options: ImportOptions, stats: ImportStats) -> Interactions:
    if stats.rows_read == 0:
        names = ", ".join(f["name"] for f in stats.files[:5])
        raise DataValidationError(
            f"the files hold no data rows ({names}: a header at most); upload the interactions "
            f"themselves, one row per interaction under the header."
        )
    if table.num_rows == 0:
        raise DataValidationError(
            f"no interactions are left after filtering ({stats.dropped_summary()}); "
            f"loosen min_event_value or event_types."
        )
    user_idx, user_ids = factorize(table["user_id"])
    item_idx, item_ids = factorize(table["item_id"])
    timestamps = table["timestamp"].to_numpy() if "timestamp" in table.column_names else None
    types = None
    if "event_type" in table.column_names:
        types = np.asarray(table["event_type"].to_numpy(zero_copy_only=False), dtype=str)
    if timestamps is None:
        stats.warnings.append(
            "no timestamp column: time-based splits and temporal features are disabled"
        )
    key = user_idx * len(item_ids) + item_idx
    sorted_keys = np.sort(key)
    stats.duplicate_rows = int(np.count_nonzero(sorted_keys[1:] == sorted_keys[:-1]))
    del sorted_keys
    if stats.duplicate_rows and options.duplicates != "keep":
        columns = _apply_duplicates(key, timestamps, weights, types, options.duplicates, stats)
        key, timestamps, weights, types = columns
        user_idx, item_idx = key // len(item_ids), key % len(item_ids)
    meta = {
        "source": stats.source,
        "source_files": [f["name"] for f in stats.files],
        "timestamps_unit": stats.timestamps_unit,
        "columns": stats.files[0]["roles"],
        "encodings": sorted({f["encoding"] for f in stats.files}),
        "import_options": stats.options,
    }
    return Interactions(
        user_idx=user_idx,
        item_idx=item_idx,
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=timestamps,
        weights=weights,
        event_types=types,
        meta=meta,
    )


def _apply_duplicates(key, timestamps, weights, types, policy: str, stats: ImportStats):
    """One row per (user, item): the first in (timestamp, file) order, or summed weights.

    Surviving rows keep file order; ``sum`` keeps the latest row's timestamp and event type.
    """
    order = np.arange(len(key)) if timestamps is None else np.argsort(timestamps, kind="stable")
    rows = order[np.argsort(key[order], kind="stable")]  # by pair, then (timestamp, file)
    ordered = key[rows]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    if policy == "first":
        keep = np.sort(rows[starts])
        stats.dropped["duplicate (user, item) rows (duplicates=first)"] = len(key) - len(keep)
        summed = None if weights is None else weights[keep]
    else:
        row_weights = np.ones(len(key), np.float32) if weights is None else weights[rows]
        sums = np.add.reduceat(row_weights, starts).astype(np.float32)
        last = rows[np.r_[starts[1:] - 1, len(rows) - 1]]  # the latest row of each pair
        in_file_order = np.argsort(last, kind="stable")
        keep, summed = last[in_file_order], sums[in_file_order]
        stats.dropped["duplicate (user, item) rows merged (duplicates=sum)"] = len(key) - len(keep)
    new_ts = None if timestamps is None else timestamps[keep]
    new_types = None if types is None else types[keep]
    return key[keep], new_ts, summed, new_types


def interactions_to_table(data: Interactions) -> pa.Table:
    """The normalised interaction table (``mfrec import``'s Parquet file), ids as strings.

    Columns: ``user_id``, ``item_id`` (strings), ``timestamp`` (int64 Unix seconds),
    ``event_value`` (float32: the weights) and ``event_type`` (string); absent ones are all null,
    and importing the table again gives the same interactions.
    """
    n = len(data)

    def optional(values, kind):
        return pa.nulls(n, kind) if values is None else pa.array(values, kind)

    return pa.table(
        {
            "user_id": pa.array(data.user_ids[data.user_idx], pa.string()),
            "item_id": pa.array(data.item_ids[data.item_idx], pa.string()),
            "timestamp": optional(data.timestamps, pa.int64()),
            "event_value": optional(data.weights, pa.float32()),
            "event_type": optional(data.event_types, pa.string()),
        }
    )


__all__ = ["DataReport", "ImportOptions", "interactions_to_table", "load_interactions"]
