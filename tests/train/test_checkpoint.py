"""Training checkpoints: fingerprints, atomic numbered files, and loading without pickle."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mfrec.train import checkpoint
from mfrec.train.checkpoint import fingerprint, load_latest, save_checkpoint
from mfrec.train.config import TrainConfig
from mfrec.train.interactions import Interactions

CPU = torch.device("cpu")
CONFIG = TrainConfig(embedding_dim=8, num_epochs=2)


def data(item_idx=(0, 1, 1, 2)) -> Interactions:
    item_idx = np.asarray(item_idx, dtype=np.int64)
    return Interactions(
        user_idx=np.arange(len(item_idx), dtype=np.int64) % 2,
        item_idx=item_idx,
        user_ids=np.array(["u0", "u1"]),
        item_ids=np.array(["i0", "i1", "i2"]),
    )


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- fingerprint ------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_describes_the_run():
    found = fingerprint(data(), None, CONFIG, CPU)
    assert found == fingerprint(data(), None, CONFIG, CPU)
    assert found["version"] == checkpoint.CHECKPOINT_VERSION
    assert (found["num_users"], found["num_items"], found["num_interactions"]) == (2, 3, 4)
    assert found["device_type"] == "cpu"
    assert "device" not in found["config"] and found["config"]["embedding_dim"] == 8


@pytest.mark.parametrize(
    ("changed", "key"),
    [
        (lambda: fingerprint(data((0, 1, 2, 1)), None, CONFIG, CPU), "data"),
        (lambda: fingerprint(data(), data(), CONFIG, CPU), "data"),
        (
            lambda: fingerprint(data(), None, TrainConfig(embedding_dim=16, num_epochs=2), CPU),
            "config",
        ),
        (lambda: fingerprint(data(), None, CONFIG, torch.device("cuda")), "device_type"),
    ],
)
def test_fingerprint_changes_with_the_data_the_config_and_the_device_type(changed, key):
    base = fingerprint(data(), None, CONFIG, CPU)
    other = changed()
    assert [k for k in base if base[k] != other[k]] == [key]


def test_fingerprint_ignores_how_the_device_is_spelled():
    auto = fingerprint(data(), None, CONFIG, CPU)
    spelled = fingerprint(
        data(), None, TrainConfig(embedding_dim=8, num_epochs=2, device="cpu"), CPU
    )
    assert auto == spelled


# --- save_checkpoint --------------------------------------------------------------------------


def test_saves_are_numbered_and_only_the_newest_two_are_kept(tmp_path):
    folder = tmp_path / "new" / "checkpoints"  # created when needed
    paths = [save_checkpoint(folder, {"step": step}) for step in range(4)]
    assert [p.name for p in paths] == [f"checkpoint-0000000{n}.pt" for n in (1, 2, 3, 4)]
    assert names(folder) == ["checkpoint-00000003.pt", "checkpoint-00000004.pt"]
    assert len(names(folder)) == checkpoint.KEEP


def test_numbering_continues_after_the_files_already_there(tmp_path):
    (tmp_path / "checkpoint-00000041.pt").write_bytes(b"older run")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    (tmp_path / ".checkpoint-00000099.pt.partial").write_bytes(b"interrupted write")
    assert save_checkpoint(tmp_path, {}).name == "checkpoint-00000042.pt"
    assert "notes.txt" in names(tmp_path) and "checkpoint-00000041.pt" in names(tmp_path)


def test_tensors_numbers_and_strings_round_trip(tmp_path):
    state = {
        "fingerprint": {"data": "abc", "config": {"loss": "bpr"}},
        "weights": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "epoch": 3,
        "history": [{"epoch": 1, "loss": 0.5}],
    }
    save_checkpoint(tmp_path, state)
    loaded = load_latest(tmp_path, state["fingerprint"])
    assert torch.equal(loaded["weights"], state["weights"])
    assert {k: v for k, v in loaded.items() if k != "weights"} == {
        k: v for k, v in state.items() if k != "weights"
    }
    assert not list(tmp_path.glob(".*.partial"))


# --- load_latest ------------------------------------------------------------------------------


def test_load_latest_resumes_the_newest_checkpoint(tmp_path, caplog):
    expected = {"data": "abc"}
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, {"fingerprint": expected, "epoch": epoch})
    with caplog.at_level(logging.INFO, logger="mfrec.train"):
        assert load_latest(tmp_path, expected)["epoch"] == 3
    assert "resuming from checkpoint" in caplog.text and "checkpoint-00000003.pt" in caplog.text


@pytest.mark.parametrize("folder", [None, "missing", "empty"])
def test_no_checkpoint_means_a_fresh_start(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    assert load_latest(None if folder is None else tmp_path / folder, {"data": "abc"}) is None


@pytest.mark.parametrize(
    ("state", "differs"),
    [
        ({"fingerprint": {"data": "abc", "config": {"loss": "bpr"}}}, "config"),
        ({"fingerprint": {"data": "xyz", "config": {"loss": "softmax"}}}, "data"),
        ({"fingerprint": "old format"}, "config, data"),
        ({"epoch": 3}, "config, data"),
    ],
)
def test_a_checkpoint_of_another_run_is_ignored_and_the_log_says_why(
    tmp_path, caplog, state, differs
):
    save_checkpoint(tmp_path, state)
    expected = {"data": "abc", "config": {"loss": "softmax"}}
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        assert load_latest(tmp_path, expected) is None
    assert f"written for a different {differs}\n" in caplog.text
    assert "training starts afresh" in caplog.text


def test_a_non_dict_checkpoint_is_ignored_as_another_format(tmp_path, caplog):
    torch.save([1, 2], tmp_path / "checkpoint-00000001.pt")
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        assert load_latest(tmp_path, {"data": "abc"}) is None
    assert "it holds no training state" in caplog.text and "starts afresh" in caplog.text


@pytest.mark.parametrize("cut", ["truncated", "empty"])
def test_an_unreadable_checkpoint_is_ignored(tmp_path, caplog, cut):
    path = save_checkpoint(tmp_path, {"fingerprint": {"data": "abc"}, "w": torch.ones(100)})
    path.write_bytes(
        path.read_bytes()[: len(path.read_bytes()) // 2] if cut == "truncated" else b""
    )
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        assert load_latest(tmp_path, {"data": "abc"}) is None
    assert f"ignoring checkpoint {path}: it cannot be read" in caplog.text


class MakesADirectoryWhenUnpickled:
    """Unpickling this calls ``os.mkdir(path)``: a side effect a test can see."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoints" / "checkpoint-00000001.pt"
    path.parent.mkdir()
    torch.save({"fingerprint": {"data": "abc"}, "x": MakesADirectoryWhenUnpickled(marker)}, path)
    assert load_latest(path.parent, {"data": "abc"}) is None
    assert not marker.exists()


def test_a_checkpoint_holding_a_foreign_object_is_ignored_and_the_log_says_why(tmp_path, caplog):
    path = tmp_path / "checkpoint-00000001.pt"
    torch.save({"fingerprint": {"data": "abc"}, "x": MakesADirectoryWhenUnpickled(tmp_path)}, path)
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        assert load_latest(tmp_path, {"data": "abc"}) is None
    assert f"ignoring checkpoint {path}: it cannot be read" in caplog.text


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    save_checkpoint(tmp_path, {"fingerprint": {"data": "abc"}, "epoch": 1})
    newest = save_checkpoint(tmp_path, {"fingerprint": {"data": "abc"}, "epoch": 2})
    newest.write_bytes(b"\x00 random bytes, not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="mfrec.train"):
        state = load_latest(tmp_path, {"data": "abc"})
    assert state["epoch"] == 1
    assert f"ignoring checkpoint {newest}: it cannot be read" in caplog.text


def test_the_newest_matching_checkpoint_is_resumed_past_a_newer_mismatch(tmp_path):
    save_checkpoint(tmp_path, {"fingerprint": {"data": "abc"}, "epoch": 3})
    save_checkpoint(tmp_path, {"fingerprint": {"data": "other"}, "epoch": 1})
    assert load_latest(tmp_path, {"data": "abc"})["epoch"] == 3
