"""The data report: what was imported, what was dropped and why, and Amazon Personalize's minimums.

Amazon Personalize refuses to train below a hard minimum and recommends more; mfrec applies the
same figures so that data accepted here would be accepted there:

* hard minimum (refused unless ``check_minimums=False``): 1,000 interactions in total and 25 users
  with at least 2 interactions each;
* guidance (a warning): at least 50 users, 100 items, and a median of 24 interactions per user.

Definitions: ``density`` = distinct (user, item) pairs / (num_users x num_items); per-user and
per-item counts include repeated pairs; ``duplicates.rows`` counts rows whose (user, item) pair
already appeared earlier in file order, before the ``duplicates`` policy was applied.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mfrec.train.ingest.columns import TIMESTAMP_MIN_SECONDS
from mfrec.train.interactions import Interactions

HARD_MIN_INTERACTIONS = 1_000
HARD_MIN_USERS_WITH_2 = 25
GUIDE_MIN_USERS = 50
GUIDE_MIN_ITEMS = 100
GUIDE_MIN_MEDIAN_PER_USER = 24


@dataclass
class ImportStats:
    """Facts the importer gathers while reading, handed to :func:`build_report`."""

    source: str
    options: dict = field(default_factory=dict)
    files: list[dict] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    timestamps_unit: str | None = None
    duplicate_rows: int = 0
    event_type_counts: dict[str, int] = field(default_factory=dict)

    def add_file(self, name, raw, cmap, roles, bad_counts, examples) -> None:
        """Record one file read by the importer.

        ``raw``: its RawTable; ``cmap``: its ColumnMap; ``roles``: role -> column actually used;
        ``bad_counts``: reason -> rows dropped; ``examples``: located examples of bad values.
        """
        self.files.append(
            {
                "name": name,
                "format": raw.source.describe(),
                "encoding": raw.source.encoding,
                "columns": list(raw.source.column_names) or list(raw.table.column_names),
                "roles": dict(roles),
                "interpretation": cmap.how,
                "ignored_columns": list(cmap.ignored),
                "rows_read": raw.table.num_rows + raw.bad_row_count,
                "unparseable_rows": raw.bad_row_count,
                "bad_values": dict(bad_counts),
                "examples": raw.bad_row_examples + examples,
            }
        )
        if raw.bad_row_count:
            self._count("unparseable rows skipped", raw.bad_row_count)
            self.warnings.append(
                f"{name}: skipped {raw.bad_row_count} unparseable row(s), e.g. "
                f"{raw.bad_row_examples[0]}"
            )
        for reason, count in bad_counts.items():
            self._count(f"rows with {reason} skipped", count)
        if bad_counts:
            self.warnings.append(
                f"{name}: skipped {sum(bad_counts.values())} row(s) with bad values, e.g. "
                f"{examples[0]}"
            )
        if raw.source.encoding == "latin-1":
            self.warnings.append(
                f"{name} is not valid UTF-8 and was read as latin-1 (ISO-8859-1); if ids look "
                f"wrong, save the file as UTF-8"
            )

    def _count(self, reason: str, count: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    @property
    def rows_read(self) -> int:
        return sum(f["rows_read"] for f in self.files)

    def dropped_summary(self) -> str:
        parts = [f"{n:,} {reason}" for reason, n in self.dropped.items() if n]
        return f"read {self.rows_read:,} rows; dropped " + ("; ".join(parts) or "none")


@dataclass
class DataReport:
    """The data report (``to_dict()`` is the JSON file, ``summary()`` the human version)."""

    source: str
    files: list[dict]
    skipped_files: list[str]
    rows_read: int
    dropped: dict[str, int]
    num_interactions: int
    num_users: int
    num_items: int
    density: float
    interactions_per_user: dict[str, float]
    interactions_per_item: dict[str, float]
    timestamps_unit: str | None
    time_range: dict | None
    duplicates: dict
    event_types: dict[str, int]
    minimums: dict[str, dict]
    warnings: list[str]
    options: dict

    def to_dict(self) -> dict:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def refusal(self) -> str | None:
        """Why Amazon Personalize's hard minimum is not met, or ``None`` when it is."""
        failed = [check for check in self.minimums.values() if not check["ok"]]
        if not failed:
            return None
        have = " and ".join(f"{c['value']:,} {c['what']}" for c in failed)
        need = " and ".join(f"{c['required']:,}" for c in failed)
        return (
            f"too little data: {have}, below Amazon Personalize's minimum ({need}; mfrec uses "
            f"the same). Add interactions, or loosen the options that dropped rows "
            f"(dropped: {self._dropped_text()})."
        )

    def _dropped_text(self) -> str:
        parts = [f"{n:,} {reason}" for reason, n in self.dropped.items() if n]
        return "; ".join(parts) or "none"

    def summary(self) -> str:
        """A short human-readable summary (a few lines)."""
        per_user, per_item = self.interactions_per_user, self.interactions_per_item
        lines = [
            f"data report for {self.source}",
            f"  files: {len(self.files)} read, {len(self.skipped_files)} skipped",
        ]
        for f in self.files[:5]:
            roles = ", ".join(f"{role}={col}" for role, col in f["roles"].items())
            lines.append(f"    {f['name']}: {f['format']}; {roles} ({f['interpretation']})")
        if len(self.files) > 5:
            lines.append(f"    ... and {len(self.files) - 5} more")
        lines += [
            f"  interactions: {self.num_interactions:,} (rows read {self.rows_read:,}; dropped: "
            f"{self._dropped_text()})",
            f"  users: {self.num_users:,} (interactions per user min {per_user['min']:g} / "
            f"median {per_user['median']:g} / max {per_user['max']:g})",
            f"  items: {self.num_items:,} (per item min {per_item['min']:g} / median "
            f"{per_item['median']:g} / max {per_item['max']:g})",
            f"  density: {self.density:.4%}",
        ]
        if self.time_range:
            lines.append(
                f"  time range: {self.time_range['start']} .. {self.time_range['end']} "
                f"(read as {self.timestamps_unit})"
            )
        else:
            lines.append("  time range: no timestamps")
        lines.append(
            f"  duplicates: {self.duplicates['rows']:,} rows repeat a (user, item) pair "
            f"(policy: {self.duplicates['policy']})"
        )
        if self.event_types:
            top = sorted(self.event_types.items(), key=lambda kv: -kv[1])[:5]
            lines.append("  event types: " + ", ".join(f"{k or '(empty)'}={v:,}" for k, v in top))
        refusal = self.refusal()
        lines.append(
            "  Amazon Personalize minimums: "
            + ("NOT met" if refusal else "met")
            + " (1,000 interactions; 25 users with >= 2 interactions)"
        )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _spread(counts: np.ndarray) -> dict[str, float]:
    if len(counts) == 0:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "mean": round(float(counts.mean()), 3),
        "max": int(counts.max()),
    }


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(data: Interactions, stats: ImportStats) -> DataReport:
    """Compute the report of imported ``data``; adds Personalize's guidance to the warnings."""
    user_counts, item_counts = data.user_counts(), data.item_counts()
    n, num_users, num_items = len(data), data.num_users, data.num_items
    pairs = n if stats.options.get("duplicates") != "keep" else n - stats.duplicate_rows
    warnings = list(stats.warnings)
    time_range = None
    if data.timestamps is not None and n:
        start, end = int(data.timestamps.min()), int(data.timestamps.max())
        time_range = {"start": _iso(start), "end": _iso(end), "min": start, "max": end}
        if end < TIMESTAMP_MIN_SECONDS:  # probably sequence numbers, not Unix seconds
            warnings.append(
                f"timestamps are small numbers (max {end}) and were read as Unix seconds; they "
                f"still order events, but dates in the report are meaningless"
            )
    users_with_2 = int((user_counts >= 2).sum())
    minimums = {
        "interactions": {
            "value": n,
            "required": HARD_MIN_INTERACTIONS,
            "what": "interactions",
            "ok": n >= HARD_MIN_INTERACTIONS,
        },
        "users_with_2_interactions": {
            "value": users_with_2,
            "required": HARD_MIN_USERS_WITH_2,
            "what": "users with at least 2 interactions",
            "ok": users_with_2 >= HARD_MIN_USERS_WITH_2,
        },
    }
    median_per_user = float(np.median(user_counts)) if n else 0.0
    guidance = [
        (num_users, GUIDE_MIN_USERS, "users"),
        (num_items, GUIDE_MIN_ITEMS, "items"),
        (median_per_user, GUIDE_MIN_MEDIAN_PER_USER, "interactions per user (median)"),
    ]
    for value, required, what in guidance:
        if value < required:
            warnings.append(
                f"only {value:g} {what}; Amazon Personalize recommends at least {required} "
                f"for useful recommendations"
            )
    return DataReport(
        source=stats.source,
        files=stats.files,
        skipped_files=stats.skipped_files,
        rows_read=stats.rows_read,
        dropped={k: v for k, v in stats.dropped.items() if v},
        num_interactions=n,
        num_users=num_users,
        num_items=num_items,
        density=pairs / (num_users * num_items) if n else 0.0,
        interactions_per_user=_spread(user_counts),
        interactions_per_item=_spread(item_counts),
        timestamps_unit=stats.timestamps_unit,
        time_range=time_range,
        duplicates={"rows": stats.duplicate_rows, "policy": stats.options.get("duplicates")},
        event_types=dict(stats.event_type_counts),
        minimums=minimums,
        warnings=warnings,
        options=stats.options,
    )
