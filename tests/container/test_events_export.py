"""``mfrec events export``: stored events as an interactions file, and the loop closed: the
export beside the training data is read by ``mfrec train`` as a second file of the channel."""

from __future__ import annotations

import csv

from mfrec.cli import main
from mfrec.serve.events import Event
from mfrec.serve.events.sqlite_store import SQLiteStore
from mfrec.train.artifact import load

# Every "auto" fixed, so that training is one short iALS fit without probes.
FAST = [
    f"--set={setting}"
    for setting in (
        "model=ials",
        "num_epochs=1",
        "embedding_dim=4",
        "device=cpu",
        "regularization=0.01",
        "unobserved_weight=0.1",
        "recency_min_weight=1",
        "early_stopping_patience=0",
    )
]


def write_interactions(path, num_users: int = 60, per_user: int = 20) -> None:
    """Users in four taste groups over 40 items (enough for the data minimums), in the columns
    of Amazon Personalize's interactions dataset."""
    lines = ["user_id,item_id,timestamp,event_type,event_value"]
    for user in range(num_users):
        items = [(user % 4) * 10 + (user * 7 + n * 3) % 10 for n in range(per_user)]
        lines += [
            f"u{user},i{item},{1_600_000_000 + 100 * user + n},click,1"
            for n, item in enumerate(items)
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def stored(db, events) -> None:
    store = SQLiteStore(db)
    store.put_events(events)
    store.close()


def test_export_writes_the_stored_events_by_user_then_time(tmp_path, capsys):
    db = tmp_path / "events.sqlite"
    stored(
        db,
        [
            Event("e2", "u2", "i9", "buy", 4.5, 1_700_000_002.7, "s"),
            Event("e1", "u1", "i3", "click", None, 1_700_000_001.0, "s"),
            Event("e0", "u2", "i1", "click", 1.0, 1_700_000_000.0, "s"),
            Event("e3", "u2", None, "visit", None, 1_700_000_003.0, "s"),
        ],
    )
    out = tmp_path / "export" / "events.csv"
    assert main(["events", "export", "--db", str(db), "--out", str(out)]) == 0
    with open(out, newline="") as file:
        rows = list(csv.reader(file))
    assert rows == [
        ["user_id", "item_id", "timestamp", "event_type", "event_value"],
        ["u1", "i3", "1700000001", "click", ""],
        ["u2", "i1", "1700000000", "click", "1.0"],
        ["u2", "i9", "1700000002", "buy", "4.5"],
    ]
    printed = capsys.readouterr().out
    assert "wrote 3 events" in printed and "1 events without an item left out" in printed
    assert not (out.parent / "events.csv.partial").exists()


def test_export_with_the_training_datas_columns(tmp_path):
    db = tmp_path / "events.sqlite"
    stored(db, [Event("e1", "u1", "i3", "click", 2.0, 1_700_000_001.0, "s")])
    out = tmp_path / "events.csv"
    args = ["events", "export", "--db", str(db), "--out", str(out)]
    assert main([*args, "--columns", "user_id,item_id,timestamp"]) == 0
    assert out.read_text().splitlines() == ["user_id,item_id,timestamp", "u1,i3,1700000001"]
    assert main([*args, "--columns", "user_id,rating"]) == 1


def test_export_of_a_missing_or_damaged_database_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "events.csv"
    assert main(["events", "export", "--db", str(tmp_path / "nope.sqlite"), "--out", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"garbage" * 1000)
    assert main(["events", "export", "--db", str(damaged), "--out", str(out)]) == 1
    assert "damaged or not an mfrec events database" in capsys.readouterr().err
    assert not out.exists()


def test_export_then_train_learns_the_new_users(tmp_path):
    data = tmp_path / "training"
    write_interactions(data / "interactions.csv")
    db = tmp_path / "events.sqlite"
    new_users = [f"new-{k}" for k in range(3)]
    stored(
        db,
        [
            Event(f"{user}-{n}", user, f"i{n % 10}", "click", 1.0, 1_700_000_000.0 + n, "s")
            for user in new_users
            for n in range(20)
        ],
    )
    assert main(["events", "export", "--db", str(db), "--out", str(data / "events.csv")]) == 0
    model = tmp_path / "model"
    assert main(["train", "--data", str(data), "--model-dir", str(model), *FAST]) == 0
    user_ids = set(load(model).user_ids.tolist())
    assert set(new_users) <= user_ids and "u0" in user_ids
