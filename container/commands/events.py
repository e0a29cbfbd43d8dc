"""``mfrec events export``: the events a server stored (PutEvents) as an interactions file that
``mfrec train`` reads as a second file of the training channel, so that the next model learns
from them.

The file is CSV with a header, ``user_id,item_id,timestamp,event_type,event_value``, one row
per stored event with an item, by user then time; ``timestamp`` is whole seconds since 1970
(``sentAt``), ``event_value`` is empty when the event had none. It is written to a partial
file and renamed, so a failed export never leaves half a file. ``mfrec train`` needs every file
of a channel to have the same kinds of columns: ``--columns`` writes those of the training data.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "event_value")


def register(subparsers) -> None:
    events = subparsers.add_parser(
        "events",
        help="work with the events a server stored (export them for training)",
        description="The events a server stored from PutEvents (MFREC_EVENTS_DB); see "
        "docs/serving.md.",
    )
    actions = events.add_subparsers(
        dest="action", metavar="ACTION", required=True, help="export (the only action)"
    )
    export = actions.add_parser(
        "export",
        help="write stored events as an interactions CSV for mfrec train",
        description="Write the stored events as user_id,item_id,timestamp,event_type,"
        "event_value rows; put the file beside the training data (a second file of the "
        "training channel) and train again.",
    )
    export.add_argument(
        "--db",
        required=True,
        help="the events database: a SQLite file (the server's events.sqlite), "
        "sqlite:///path or redis://host:6379/0",
    )
    export.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    export.add_argument(
        "--columns",
        default=",".join(COLUMNS),
        help="the columns to write, comma-separated (default: all five); mfrec train needs "
        "every file of a channel to have the same kinds of columns, so give those of the "
        "training data, e.g. user_id,item_id,timestamp",
    )
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from mfrec.serve.events import EventStoreError, max_per_user, open_store, store_location
    from mfrec.train.errors import write_through_partial

    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    if unknown := [c for c in columns if c not in COLUMNS]:
        raise EventStoreError(f"--columns: unknown {', '.join(unknown)}; use {', '.join(COLUMNS)}")
    if not {"user_id", "item_id"} <= set(columns):
        raise EventStoreError("--columns must include user_id and item_id")
    location = store_location({"MFREC_EVENTS_DB": args.db})
    if location is None:
        raise EventStoreError(f"--db {args.db!r}: name a SQLite file or a redis:// URL")
    if "://" not in location and not os.path.isfile(location):
        raise EventStoreError(f"--db {args.db!r}: no such file; give the server's events.sqlite")
    store = open_store(location, max_per_user())
    counts = {"rows": 0, "without item": 0}

    def write(partial: Path) -> None:
        with open(partial, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(columns)
            for event in store.events():
                if event.item_id is None:
                    counts["without item"] += 1
                    continue
                value = "" if event.event_value is None else repr(event.event_value)
                row = {
                    "user_id": event.user_id,
                    "item_id": event.item_id,
                    "timestamp": int(event.sent_at),
                    "event_type": event.event_type,
                    "event_value": value,
                }
                writer.writerow([row[name] for name in columns])
                counts["rows"] += 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_through_partial(args.out, args.out.with_name(args.out.name + ".partial"), write)
    finally:
        store.close()
    skipped = f"; {counts['without item']} events without an item left out" * bool(
        counts["without item"]
    )
    print(f"wrote {counts['rows']} events from {store.location} to {args.out}{skipped}")
    return 0
