"""Smoke tests of the benchmark scripts: tiny data, tiny budgets, structure only, nothing timed.

The benchmarks live in ``benchmarks/`` beside the package (they are not installed), so they are
imported from the repository root.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HAS_IMPLICIT = importlib.util.find_spec("implicit") is not None


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO))
    try:
        yield {
            name: importlib.import_module(f"benchmarks.{name}")
            for name in ("common", "peers", "quality", "speed", "gpu")
        }
    finally:
        sys.path.remove(str(REPO))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Planted-topic synthetic data from mfrec's generator, as a CSV file and Interactions."""
    from mfrec.train.ingest import load_interactions
    from mfrec.train.ingest.synth import write_synthetic

    path = tmp_path_factory.mktemp("planted") / "planted.csv"
    write_synthetic(path, 6000, num_users=150, num_items=120, seed=3, num_topics=4)
    data, _report = load_interactions(path)
    return path, data


# ---------------------------------------------------------------------------------------------
# Peers


def test_ease_known_answer(bench):
    # X = [[1,1],[1,0],[0,1]], λ = 1: XᵀX + I = [[3,1],[1,3]], P = [[3,-1],[-1,3]] / 8,
    # B = -P / diag(P) off the diagonal = 1/3.
    matrix = np.array([[1, 1], [1, 0], [0, 1]], dtype=np.float64)
    weights = bench["peers"].ease_weights(matrix, l2=1.0)
    np.testing.assert_allclose(weights, [[0.0, 1 / 3], [1 / 3, 0.0]], atol=1e-12)


def test_ease_matches_per_column_ridge_regression(bench):
    # The slow, obviously-correct form: column j regressed on the other columns, ridge λ.
    rng = np.random.default_rng(0)
    matrix = (rng.random((30, 6)) < 0.4).astype(np.float64)
    l2 = 2.5
    weights = bench["peers"].ease_weights(matrix, l2)
    for j in range(6):
        others = [c for c in range(6) if c != j]
        x = matrix[:, others]
        solved = np.linalg.solve(x.T @ x + l2 * np.eye(5), x.T @ matrix[:, j])
        np.testing.assert_allclose(weights[others, j], solved, atol=1e-10)
        assert weights[j, j] == 0.0


@pytest.mark.parametrize("name", ["popularity", "ease", "als"])
def test_peers_beat_random_on_planted_data(bench, planted, name):
    if name == "als" and not HAS_IMPLICIT:
        pytest.skip("implicit is not installed")
    from mfrec.train.metrics import evaluate
    from mfrec.train.split import temporal_split

    _path, data = planted
    train, test = temporal_split(data)
    params = bench["peers"].grid(name, 1)[0]
    fitted = bench["peers"].fit(name, train, params)
    generator = torch.Generator().manual_seed(0)

    def random_scores(user_idx):
        return torch.rand(len(user_idx), data.num_items, generator=generator)

    peer = evaluate(fitted.score_users, train, test)["ndcg@10"]
    chance = evaluate(random_scores, train, test)["ndcg@10"]
    assert peer > 1.5 * chance


def test_peer_grid_rejects_unknown_names_and_budgets(bench):
    with pytest.raises(ValueError, match="unknown peer 'svd'"):
        bench["peers"].grid("svd", 2)
    with pytest.raises(ValueError, match="budget must be at least 1"):
        bench["peers"].grid("ease", 0)
    assert bench["peers"].grid("popularity", 8) == [{}]
    assert len(bench["peers"].grid("ease", 3)) == 3


# ---------------------------------------------------------------------------------------------
# Result files


def _load_results(out_dir: Path, benchmark: str) -> dict:
    (json_path,) = out_dir.glob(f"{benchmark}-*.json")
    (md_path,) = out_dir.glob(f"{benchmark}-*.md")
    payload = json.loads(json_path.read_text())
    for key in ("benchmark", "created", "command", "machine", "versions", "git", "tables"):
        assert key in payload
    assert payload["benchmark"] == benchmark
    assert payload["command"].startswith(f"python -m benchmarks.{benchmark}")
    assert payload["machine"]["cores"] >= 1 and payload["versions"]["torch"] == torch.__version__
    text = md_path.read_text()
    for table in payload["tables"]:
        assert f"### {table['title']}" in text
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    return payload


def test_quality_main_writes_tables_for_every_system(bench, planted, tmp_path):
    path, _data = planted
    argv = ["--datasets", str(path), "--budget", "2", "--out-dir", str(tmp_path), "--threads", "1"]
    argv += ["--mfrec-set", "num_epochs=2", "--mfrec-set", "embedding_dim=8"]
    assert bench["quality"].main(argv) == 0
    payload = _load_results(tmp_path, "quality")
    found = payload["results"]["datasets"]["planted.csv"]
    expected = {"popularity", "ease", "mfrec", "mfrec-tuned"} | ({"als"} if HAS_IMPLICIT else set())
    assert set(found["systems"]) == expected
    for outcome in found["systems"].values():
        assert set(bench["quality"].METRIC_NAMES) <= set(outcome["test"])
        assert outcome["configurations_tried"] <= 2
    assert set(found["targets"]) >= {"best_peer", "mfrec", "mfrec-tuned"}
    (table,) = payload["tables"]
    assert len(table["rows"]) == len(expected)


SPEED_ARGS = ["--threads", "1", "--naive-epochs", "1", "--eval-users", "50", "--seed", "0"]


def test_speed_main_writes_tables_for_every_system(bench, tmp_path):
    argv = ["--sizes", "4k", "--synth-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path)]
    argv += ["--in-process", *SPEED_ARGS]
    argv += [
        "--mfrec-set",
        "num_epochs=2",
        "--mfrec-set",
        "embedding_dim=8",
        "--als",
        "iterations=2",
    ]
    assert bench["speed"].main(argv) == 0
    payload = _load_results(tmp_path, "speed")
    systems = payload["results"]["datasets"]["4k"]["systems"]
    expected = {"mfrec", "mfrec-lean", "naive"} | ({"als"} if HAS_IMPLICIT else set())
    assert set(systems) == expected
    for summary in systems.values():
        assert summary["peak_rss_mib"] > 0 and summary["epochs"] >= 1
        assert 0.0 <= summary["best_valid_ndcg@10"] <= 1.0
    targets = payload["results"]["datasets"]["4k"]["targets"]
    assert set(targets) == {"mfrec", "mfrec-lean"}
    assert all("naive_epoch_over_mfrec_epoch" in found for found in targets.values())
    (markdown,) = tmp_path.glob("speed-*.md")
    assert "| 4k | lean: embedding_dim=8, num_negatives=32, batch_size=4096, num_epochs=2 |" in (
        markdown.read_text()
    )


def test_speed_worker_runs_in_its_own_process(bench, tmp_path):
    args = ["--worker", "naive", "--size", "4k", "--synth-dir", str(tmp_path), *SPEED_ARGS]
    summary = bench["common"].run_worker("benchmarks.speed", args, timeout=120)
    assert summary["own_process"] and summary["system"] == "naive"
    assert summary["peak_rss_mib"] >= summary["rss_before_training_mib"] > 0


def test_speed_rejects_an_unknown_size(bench, capsys):
    with pytest.raises(SystemExit):
        bench["speed"].main(["--sizes", "huge"])
    assert "unknown size 'huge'" in capsys.readouterr().err


def test_gpu_refuses_to_run_without_cuda(bench):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        bench["gpu"].main(["--sizes", "4k"])


def test_gpu_profile_path_runs_on_the_cpu_when_allowed(bench, tmp_path):
    argv = ["--allow-cpu", "--in-process", "--sizes", "4k", "--skip-peers", "--epochs", "1"]
    argv += ["--threads", "1"]
    argv += ["--profile-steps", "2", "--copy-megabytes", "4", "--eval-users", "50"]
    argv += ["--synth-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path)]
    argv += ["--mfrec-set", "num_negatives=32"]
    assert bench["gpu"].main(argv) == 0
    payload = _load_results(tmp_path, "gpu")
    profile = payload["results"]["datasets"]["4k"]["profile"]
    assert profile["interactions_per_second"] > 0 and profile["copy_gb_per_second"] > 0
    assert sum(profile["breakdown"]["share"].values()) == pytest.approx(1.0)


def test_ml100k_checksum_mismatch_is_refused(bench, tmp_path):
    from mfrec.train.errors import DataValidationError

    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(DataValidationError, match="md5 differs"):
        bench["common"].ml100k_dir(tmp_path)
    with pytest.raises(DataValidationError, match="holds no u.data"):
        bench["common"].ml100k_dir(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# The robustness panel


@pytest.fixture(scope="module")
def panel(bench):
    return importlib.import_module("benchmarks.panel")


def test_panel_main_tables_cache_and_variant(bench, panel, planted, tmp_path):
    path, _data = planted
    argv = ["--members", str(path), "--budget", "1", "--threads", "1"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    variant = ["--mfrec-set", "num_epochs=2", "--mfrec-set", "embedding_dim=8"]
    assert panel.main([*argv, *variant, "--out-dir", str(tmp_path / "first")]) == 0
    first = _load_results(tmp_path / "first", "panel")
    member = first["results"]["members"]["planted.csv"]
    peer_names = {"popularity", "ease"} | ({"als"} if HAS_IMPLICIT else set())
    assert set(member["systems"]) == peer_names | {"mfrec", "mfrec-variant"}
    assert member["systems"]["mfrec"]["params"] == {}
    assert member["systems"]["mfrec-variant"]["params"] == {"num_epochs": "2", "embedding_dim": "8"}
    for outcome in member["systems"].values():
        assert set(panel.METRIC_NAMES) <= set(outcome["test"]) and outcome["cached"] is None
    row = member["panel"]
    assert row["best_peer"] in peer_names
    assert row["mfrec"]["ratio"] == pytest.approx(
        row["mfrec"]["ndcg@10"] / row["best_peer_ndcg@10"]
    )
    assert first["results"]["panel"]["mfrec"]["min_ratio"] == row["mfrec"]["ratio"]
    assert "| mfrec, variant: num_epochs=2, embedding_dim=8 |" in (
        next((tmp_path / "first").glob("panel-*.md")).read_text()
    )

    # Only mfrec changes: the peers come from the cache, and the results say so.
    assert panel.main([*argv, "--out-dir", str(tmp_path / "second")]) == 0
    second = _load_results(tmp_path / "second", "panel")
    again = second["results"]["members"]["planted.csv"]
    assert set(again["systems"]) == peer_names | {"mfrec"}
    for name in peer_names:
        assert (
            again["systems"][name]["cached"]
            and again["systems"][name]["test"] == (member["systems"][name]["test"])
        )
    assert f"{len(peer_names)} peer results read from the cache" in " ".join(second["notes"])
    assert "| cached |" in next((tmp_path / "second").glob("panel-*.md")).read_text()


def test_panel_sparse_member_keeps_each_users_earliest_share_rounded_up(panel):
    from mfrec.train.interactions import Interactions

    # a: 10 rows, its third and fourth earliest tied in time (file order decides); b: 1 row;
    # c: 4 rows, out of time order in the file. ceil(0.3 n): a keeps 3, b 1, c ceil(1.2) = 2.
    users = ["a"] * 10 + ["b"] + ["c"] * 4
    items = [f"i{k}" for k in range(10)] + ["i0"] + ["x3", "x1", "x2", "x0"]
    times = [5, 4, 9, 1, 2, 8, 7, 6, 3, 3] + [1] + [40, 10, 30, 20]
    data = Interactions.from_ids(users, items, timestamps=times)
    kept = panel.earliest_share(data)
    pairs = list(zip(kept.user_ids[kept.user_idx], kept.item_ids[kept.item_idx], strict=True))
    assert pairs == [("a", "i3"), ("a", "i4"), ("a", "i8"), ("b", "i0"), ("c", "x1"), ("c", "x0")]
    assert (data.num_items, kept.num_items) == (14, 6)  # unseen items leave the catalogue
    assert kept.timestamps.tolist() == [1, 2, 3, 1, 10, 20]


def test_panel_longtail_member_is_in_the_long_tail_regime(panel):
    found = panel.shape(panel.longtail_data())
    assert found["num_items"] >= 10_000 and found["num_items"] > found["num_users"]
    assert found["median_per_item"] <= 8 and found["day_resolution"]
    assert found["share_items_under_5"] > 0.5


@pytest.mark.ml100k
def test_panel_ml100k_members(panel, ml100k_dir):
    positives = panel.load_member("ml-100k-pos", ml100k_dir)
    assert len(positives) == 55_375  # ratings 4 and 5 in u.data
    sparse = panel.load_member("ml-100k-sparse", ml100k_dir)
    counts = panel.common.load_ml100k(ml100k_dir).user_counts()
    assert len(sparse) == int(np.sum(-(-3 * counts // 10)))  # ceil(0.3 n) per user
    assert sparse.num_users == 943 and sparse.user_counts().min() == 6  # 20 rows -> 6


def test_panel_rejects_unknown_members_and_settings(panel, capsys):
    with pytest.raises(SystemExit):
        panel.main(["--members", "ml-1m"])
    assert "unknown member 'ml-1m'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        panel.main(["--mfrec-set", "embedding_size=8"])
    assert "--mfrec-set" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# T: a user's time to a model, one iALS iteration against implicit's


@pytest.fixture(scope="module")
def speed_process(bench):
    return importlib.import_module("benchmarks.speed_process")


def test_speed_process_user_part_times_both_processes(speed_process, tmp_path):
    if not HAS_IMPLICIT:
        pytest.skip("implicit is not installed")
    argv = ["--part", "user", "--sizes", "3k", "--repeats", "1", "--als-iterations", "2"]
    argv += ["--mfrec-set", "model=ials", "--mfrec-set", "num_epochs=2"]
    argv += ["--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path)]
    assert speed_process.main(argv) == 0
    (json_path,) = tmp_path.glob("speed_process-user-*.json")
    payload = json.loads(json_path.read_text())
    found = payload["results"]["datasets"]["3k"]
    (mfrec,), (als,) = found["mfrec"], found["als"]
    assert mfrec["model"] == "ials" and mfrec["probes"]["ials"] >= 1
    assert mfrec["wall_seconds"] > mfrec["probe_seconds"]["ials"] > 0
    assert als["interactions"] == 3000 and als["fit_seconds"] > 0
    assert min(mfrec["peak_rss_mib"], als["peak_rss_mib"]) > 50  # each child's own, in MiB
    assert found["mfrec_over_als"] == pytest.approx(mfrec["wall_seconds"] / als["wall_seconds"])
    assert payload["results"]["load_average"]["samples"] >= 2
    assert (tmp_path / "work" / "3k" / "model-1" / "model.json").is_file()
    assert "| 3k |" in next(tmp_path.glob("speed_process-user-*.md")).read_text()


def test_speed_process_iteration_part_times_each_system(speed_process, tmp_path):
    if not HAS_IMPLICIT:
        pytest.skip("implicit is not installed")
    argv = ["--part", "iteration", "--sizes", "4k", "--iterations", "2", "--threads", "1"]
    argv += ["--in-process", "--synth-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path)]
    assert speed_process.main(argv) == 0
    (json_path,) = tmp_path.glob("speed_process-iteration-*.json")
    systems = json.loads(json_path.read_text())["results"]["datasets"]["4k"]["systems"]
    assert set(systems) == set(speed_process.ITERATION_SYSTEMS)
    for summary in systems.values():
        assert len(summary["iteration_seconds"]) == 2 and summary["median_seconds"] > 0
        assert summary["interactions"] == 4000
    assert systems["ials"]["over_implicit"] == pytest.approx(
        systems["ials"]["median_seconds"] / systems["implicit"]["median_seconds"]
    )
    assert systems["ials"]["losses"][1] < systems["ials"]["losses"][0]
