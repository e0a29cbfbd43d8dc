"""The synthetic generator: determinism, exact sizes, planted structure, streaming writers."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mfrec.train.errors import ConfigError
from mfrec.train.ingest import load_interactions
from mfrec.train.ingest.datasets import (
    build_default_dataset,
    default_dataset_path,
    default_items_path,
)
from mfrec.train.ingest.synth import SynthSpec, generate, item_metadata, write_synthetic


def test_generate_sizes_and_columns():
    frame = generate(num_users=200, num_items=100, num_interactions=5_000, seed=0)
    assert list(frame.columns) == ["user_id", "item_id", "timestamp"]
    assert len(frame) == 5_000
    assert frame.user_id.nunique() == 200 and frame.user_id.between(1, 200).all()
    assert frame.item_id.between(1, 100).all()
    assert frame.groupby("user_id").size().min() >= 5
    assert not frame.duplicated(["user_id", "item_id"]).any()


def test_same_seed_same_data_other_seed_other_data():
    a = generate(3_000, num_users=100, num_items=150, seed=7)
    pd.testing.assert_frame_equal(a, generate(3_000, num_users=100, num_items=150, seed=7))
    assert not a.equals(generate(3_000, num_users=100, num_items=150, seed=8))


def test_timestamps_strictly_increase_per_user():
    frame = generate(5_000, num_users=100, num_items=300)
    steps = frame.groupby("user_id").timestamp.diff().dropna()
    assert (steps > 0).all()
    assert frame.timestamp.between(1_577_836_800, 1_577_836_800 + 2 * 365 * 86_400).all()


def test_popularity_is_skewed_and_tastes_are_planted():
    frame = generate(20_000, num_users=400, num_items=400, seed=0, num_topics=8)
    counts = frame.item_id.value_counts()
    assert counts.iloc[:40].sum() > 2.5 * counts.iloc[-40:].sum()  # top 10% vs bottom 10%
    genre = item_metadata(400, seed=0, num_topics=8).set_index("item_id").genre
    top_share = (
        frame.assign(g=frame.item_id.map(genre))
        .groupby("user_id")
        .g.agg(lambda g: g.value_counts(normalize=True).iloc[0])
    )
    assert top_share.median() > 0.45  # vs 1/8 if tastes were not planted


def test_write_csv_gz_and_parquet_stream_the_same_rows(tmp_path):
    expected = generate(4_000, num_users=80, num_items=120, seed=3)
    write_synthetic(tmp_path / "s.csv.gz", 4_000, num_users=80, num_items=120, seed=3)
    write_synthetic(tmp_path / "s.parquet", 4_000, 80, 120, seed=3, fmt=None)
    with gzip.open(tmp_path / "s.csv.gz", "rt") as f:
        assert f.readline() == "user_id,item_id,timestamp\n"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s.csv.gz"), expected)
    pd.testing.assert_frame_equal(pq.read_table(tmp_path / "s.parquet").to_pandas(), expected)


def test_write_is_byte_identical_and_chunked(tmp_path, monkeypatch):
    import mfrec.train.ingest.synth as synth

    monkeypatch.setattr(synth, "ROWS_PER_BLOCK", 1_000)  # force several blocks
    write_synthetic(tmp_path / "a.csv", 5_000, 100, 200, seed=1)
    write_synthetic(tmp_path / "b.csv", 5_000, 100, 200, seed=1)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    frame = pd.read_csv(tmp_path / "a.csv")
    assert len(frame) == 5_000 and not frame.duplicated(["user_id", "item_id"]).any()
    assert len(list(synth.iter_blocks(5_000, 100, 200, seed=1))) >= 5


def test_default_sizes_scale_with_interactions():
    assert SynthSpec.resolve(1_000_000) == SynthSpec(1_000_000, 25_000, 10_000, 50, 0)
    assert SynthSpec.resolve(1_000).num_items == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 20, 50), r"num_interactions \(10\) must be at least num_users \(20\)"),
        ((1_000, 10, 10), "cannot place 1000 interactions: 10 users x at most 5 items each"),
    ],
)
def test_impossible_sizes(args, message):
    with pytest.raises(ConfigError, match=message):
        generate(*args)


def test_item_metadata_matches_items():
    items = item_metadata(800)
    assert list(items.columns) == ["item_id", "title", "genre"]
    assert items.item_id.tolist() == list(range(1, 801))
    assert items.genre.nunique() == 14 and items.title.is_unique


def test_embedded_default_dataset_is_reproducible(tmp_path):
    built, built_items = build_default_dataset(tmp_path)
    assert gzip.decompress(built.read_bytes()) == gzip.decompress(
        default_dataset_path().read_bytes()
    )
    assert gzip.decompress(built_items.read_bytes()) == gzip.decompress(
        default_items_path().read_bytes()
    )
    assert default_dataset_path().stat().st_size < 1_000_000


def test_embedded_default_dataset_imports_cleanly():
    data, report = load_interactions(default_dataset_path())
    assert (data.num_users, data.num_items, len(data)) == (1_500, 800, 75_000)
    assert report.warnings == [] and report.duplicates["rows"] == 0
    assert np.all(np.diff(data.timestamps[data.user_idx == 0]) > 0)


def test_day_resolution_rounds_the_same_rows_down_to_midnight_utc():
    seconds = generate(5_000, num_users=100, num_items=300, seed=4)
    days = generate(5_000, num_users=100, num_items=300, seed=4, timestamp_resolution=86_400)
    pd.testing.assert_frame_equal(days[["user_id", "item_id"]], seconds[["user_id", "item_id"]])
    assert (days.timestamp % 86_400 == 0).all()
    assert (days.timestamp == seconds.timestamp // 86_400 * 86_400).all()
    assert (days.groupby("user_id").timestamp.diff().dropna() >= 0).all()
    assert days.duplicated(["user_id", "timestamp"]).any()  # same-day ties, kept in time order


@pytest.mark.parametrize("resolution", [0, -5, 1.5])
def test_timestamp_resolution_must_be_whole_seconds(resolution):
    with pytest.raises(ConfigError, match="timestamp_resolution=.* must be a whole number"):
        generate(1_000, num_users=50, num_items=100, timestamp_resolution=resolution)
