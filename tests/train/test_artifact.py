"""The model artifact: round trip, atomic writes, and refusal of tampered or foreign folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mfrec.train import artifact as art
from mfrec.train.errors import ArtifactError


def make_artifact(num_users=4, num_items=6, dim=3, seed=0) -> art.ModelArtifact:
    rng = np.random.default_rng(seed)
    indptr = np.array([0, 2, 3, 3, 5])
    return art.ModelArtifact(
        user_embeddings=rng.normal(size=(num_users, dim)).astype(np.float32),
        item_embeddings=rng.normal(size=(num_items, dim)).astype(np.float32),
        user_biases=np.zeros(num_users, np.float32),
        item_biases=rng.normal(size=num_items).astype(np.float32),
        user_ids=np.array(["u1", "user_000061", "3", "0f8c-uuid"]),
        item_ids=np.array([f"item-{i}" for i in range(num_items)]),
        item_popularity=np.arange(num_items, dtype=np.float32),
        seen_indptr=indptr,
        seen_indices=np.array([0, 1, 2, 4, 5]),
        config={"embedding_dim": dim},
        metrics={"ndcg@10": 0.5},
        extra={"item_genre": np.array(["a", "b", "a", "c", "b", "a"])},
    )


def test_round_trip_keeps_every_array(tmp_path):
    original = make_artifact()
    art.save(original, tmp_path / "model")
    loaded = art.load(tmp_path / "model")
    for name in ("user_embeddings", "item_embeddings", "item_biases", "seen_indices"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    assert list(loaded.user_ids) == ["u1", "user_000061", "3", "0f8c-uuid"]
    assert list(loaded.extra["item_genre"]) == list(original.extra["item_genre"])
    assert loaded.config == {"embedding_dim": 3} and loaded.metrics == {"ndcg@10": 0.5}
    assert list(loaded.seen_items(0)) == [0, 1] and list(loaded.seen_items(2)) == []
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [art.ARRAYS, art.MANIFEST]


def test_failed_save_leaves_no_model(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    art.save(make_artifact(seed=1), model_dir)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(art.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        art.save(make_artifact(seed=2), model_dir)
    assert not (model_dir / art.MANIFEST).exists()
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ArtifactError, match="holds no mfrec model"):
        art.load(model_dir)


def test_tampered_file_is_refused(tmp_path):
    art.save(make_artifact(), tmp_path)
    with open(tmp_path / art.ARRAYS, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        art.load(tmp_path)


def test_missing_file_and_other_version_are_refused(tmp_path):
    art.save(make_artifact(), tmp_path)
    manifest = json.loads((tmp_path / art.MANIFEST).read_text())
    (tmp_path / art.MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format version 99 is not supported"):
        art.load(tmp_path)
    (tmp_path / art.MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / art.ARRAYS).unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        art.load(tmp_path)


def test_inconsistent_shapes_are_refused():
    good = make_artifact()
    with pytest.raises(ArtifactError, match="item_biases has shape"):
        art.ModelArtifact(**{**good.__dict__, "item_biases": np.zeros(2, np.float32)})
    with pytest.raises(ArtifactError, match="dtype object"):
        art.ModelArtifact(**{**good.__dict__, "extra": {"x": np.array([None, 1])}})._arrays()


def test_save_is_complete_or_leaves_no_model_files(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    art.save(make_artifact(), model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["arrays.npz", "model.json"]
    assert art.load(model_dir).num_items == 6

    real_replace = os.replace
    moved = []

    def replace_then_fail(src, dst):
        if Path(dst).name == "model.json" and Path(dst).parent == model_dir:
            raise OSError(28, "No space left on device")
        moved.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_fail)
    with pytest.raises(OSError, match="No space left"):
        art.save(make_artifact(), model_dir)
    assert "arrays.npz" in moved  # it was moved in, then removed again
    assert list(model_dir.iterdir()) == []
