"""The SageMaker training job, run in-process against a fake /opt/ml built in tmp_path.

Reading and checking the config files and channels alone is tested in ``test_job_config.py``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from mfrec import job_process, training_job
from mfrec.train.artifact import load
from mfrec.train.config import TrainConfig
from mfrec.train.ingest import ImportOptions

FAST = {"num_epochs": "2", "embedding_dim": "8", "device": "cpu", "loss": "bpr"}


def interactions_csv(num_users: int = 60, per_user: int = 20, num_items: int = 40) -> str:
    """Each user's items in a block of its own (plus timestamps); enough rows for the minimums."""
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp"]
    for user in range(num_users):
        items = (user % 4) * (num_items // 4) + rng.permutation(num_items // 4)
        items = np.concatenate([items, rng.integers(0, num_items, per_user - len(items))])
        for step, item in enumerate(items[:per_user]):
            lines.append(f"u{user},i{item},{1_600_000_000 + 1000 * user + step}")
    return "\n".join(lines) + "\n"


def make_layout(
    base: Path,
    hyperparameters: dict | None = None,
    channels: dict[str, str] | None = None,
    input_config: dict | None = None,
    resources: dict | None = None,
) -> Path:
    """A SageMaker layout: config files, and each channel as a folder holding one CSV."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = FAST if hyperparameters is None else hyperparameters
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channels = {"training": interactions_csv()} if channels is None else channels
    default_input = {name: {"TrainingInputMode": "File"} for name in channels}
    (config / "inputdataconfig.json").write_text(json.dumps(input_config or default_input))
    resources = resources or {"current_host": "algo-1", "hosts": ["algo-1"]}
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    for name, text in channels.items():
        folder = base / "input" / "data" / name / "prefix"
        folder.mkdir(parents=True)
        (folder / "part-0.csv").write_text(text)
    return base


def failure_text(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def model_files(base: Path) -> list[str]:
    model = base / "model"
    return sorted(p.name for p in model.iterdir()) if model.exists() else []


def random_csv(num_users: int = 50, per_user: int = 20, num_items: int = 40) -> str:
    """Exactly the minimum 1,000 rows of structureless data: with the default config, early
    stopping ends the fit after a few epochs, which keeps the no-hyperparameters run cheap."""
    rng = np.random.default_rng(1)
    lines = ["user_id,item_id,timestamp"]
    for user in range(num_users):
        for step, item in enumerate(rng.integers(0, num_items, per_user)):
            lines.append(f"u{user},i{item},{1_600_000_000 + 1000 * user + step}")
    return "\n".join(lines) + "\n"


def test_empty_hyperparameters_train_with_defaults(tmp_path):
    base = make_layout(tmp_path, hyperparameters={}, channels={"training": random_csv()})
    assert training_job.run_sagemaker_job(base) == 0
    artifact = load(base / "model")
    # The defaults, every auto resolved by the search on the hold-out: both models were fitted.
    metrics = artifact.metrics
    assert set(metrics["model_search"]) == {"ials", "sgd"} and metrics["probes"]
    assert artifact.config["model"] == metrics["model"] in ("ials", "sgd")
    auto = {k for k, v in TrainConfig().to_dict().items() if v == "auto" and k != "device"}
    assert auto == {
        "model",
        "recency_min_weight",
        "unobserved_weight",
        "regularization",
        "batch_size",
    }
    resolved = {key: value for key, value in artifact.config.items() if key not in auto}
    assert resolved == {k: v for k, v in TrainConfig().to_dict().items() if k not in auto}
    assert isinstance(artifact.config["recency_min_weight"], float)
    if metrics["model"] == "ials":
        assert isinstance(artifact.config["regularization"], float)
    assert artifact.num_users == 50 and artifact.num_items == 40
    outputs = sorted(p.name for p in (base / "output" / "data").iterdir())
    assert outputs == ["data_report.json", "metrics.json", "training_curve.png"]
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["history"] and metrics["interrupted"] is False
    assert not (base / "output" / "failure").exists()


def test_base_dir_comes_from_the_environment_at_call_time(tmp_path, monkeypatch):
    base = make_layout(tmp_path)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    assert training_job.run_sagemaker_job() == 0
    assert model_files(base) == ["arrays.npz", "model.json"]
    assert list(load(base / "model").extra) == ["item_trending", "seen_timestamps"]  # no items


def test_string_hyperparameters_any_case_and_ignored_keys(tmp_path):
    hyperparameters = {
        **FAST,
        "user_bias": "True",
        "refit": "FALSE",
        "duplicates": "First",
        "_tuning_objective_metric": "validation:ndcg@10",
        "sagemaker_container_log_level": "20",
    }
    base = make_layout(tmp_path, hyperparameters=hyperparameters)
    assert training_job.run_sagemaker_job(base) == 0
    config = load(base / "model").config
    assert config["user_bias"] is True and config["refit"] is False
    assert config["num_epochs"] == 2 and config["loss"] == "bpr"


def test_non_string_values_are_accepted_as_their_json_text(tmp_path):
    base = make_layout(tmp_path, hyperparameters={**FAST, "num_epochs": 1, "user_bias": True})
    assert training_job.run_sagemaker_job(base) == 0
    assert load(base / "model").config["user_bias"] is True


def test_unknown_hyperparameter_fails_listing_valid_names(tmp_path):
    base = make_layout(tmp_path, hyperparameters={**FAST, "num_epoch": "3"})
    assert training_job.run_sagemaker_job(base) == 1
    first_line = failure_text(base).splitlines()[0]
    assert len(first_line) < 1024
    assert "unknown hyperparameter 'num_epoch' (did you mean 'num_epochs'?)" in first_line
    for name in (*TrainConfig.hyperparameter_names(), *ImportOptions.hyperparameter_names()):
        assert name in failure_text(base)
    assert model_files(base) == []


def test_bad_hyperparameter_value_fails_with_the_allowed_range(tmp_path):
    base = make_layout(tmp_path, hyperparameters={"learning_rate": "fast"})
    assert training_job.run_sagemaker_job(base) == 1
    assert failure_text(base).startswith("ConfigError: learning_rate='fast' is not a number")


def test_missing_training_channel_lists_the_channels_found(tmp_path):
    base = make_layout(tmp_path, channels={"train": interactions_csv()})
    assert training_job.run_sagemaker_job(base) == 1
    assert "channels found: train" in failure_text(base)
    assert "channel named 'training'" in failure_text(base)


def test_bad_data_fails_and_leaves_the_model_folder_empty(tmp_path):
    rows = ["user_id,item_id"] + [f"u{n % 30},i{n % 17}" for n in range(1200)] + [",i3"]
    base = make_layout(tmp_path, channels={"training": "\n".join(rows) + "\n"})
    assert training_job.run_sagemaker_job(base) == 1
    assert failure_text(base).startswith("DataValidationError: ")
    assert "on_bad_rows=skip" in failure_text(base).splitlines()[0]
    assert model_files(base) == []


def test_too_little_data_is_refused(tmp_path):
    base = make_layout(tmp_path, channels={"training": "user_id,item_id\nu1,i1\nu2,i2\n"})
    assert training_job.run_sagemaker_job(base) == 1
    assert failure_text(base).startswith("DataValidationError: ")


def test_internal_error_exits_2_with_a_short_failure_line(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(training_job, "train_model", broken)
    base = make_layout(tmp_path)
    assert training_job.run_sagemaker_job(base) == 2
    text = failure_text(base)
    assert text.startswith("Internal error in mfrec (RuntimeError: simulated bug)")
    assert "Traceback" not in text
    assert "Traceback" in caplog.text and "simulated bug" in caplog.text
    assert model_files(base) == []


def test_a_folder_that_is_not_a_sagemaker_layout_is_explained(tmp_path):
    assert training_job.run_sagemaker_job(tmp_path / "nothing") == 1
    assert not (tmp_path / "nothing").exists()  # no failure file created out of thin air


def test_pipe_mode_reads_the_training_fifo(tmp_path):
    base = make_layout(tmp_path, channels={}, input_config={"training": {
        "TrainingInputMode": "Pipe", "ContentType": "text/csv"}})  # fmt: skip
    fifo = base / "input" / "data" / "training_0"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as pipe:
            pipe.write(interactions_csv())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert training_job.run_sagemaker_job(base) == 0
    writer.join(timeout=10)
    assert load(base / "model").num_users == 60


def test_validation_channel_is_aligned_onto_the_training_ids(tmp_path, caplog):
    validation = "user_id,item_id\nu1,i2\nu2,i3\nstranger,i1\nu3,new-item\n"
    base = make_layout(
        tmp_path, channels={"training": interactions_csv(), "validation": validation}
    )
    with caplog.at_level(logging.INFO):
        assert training_job.run_sagemaker_job(base) == 0
    assert "2 rows kept; dropped 1 rows of users and 1 rows of items" in caplog.text
    outputs = {p.name for p in (base / "output" / "data").iterdir()}
    assert "validation_report.json" in outputs


def test_failure_file_first_line_stays_under_the_limit(tmp_path):
    path = tmp_path / "failure"
    job_process.write_failure(path, "x" * 5000 + "\nsecond line")
    lines = path.read_text().splitlines()
    assert len(lines[0]) == job_process.FAILURE_LINE_LIMIT < 1024
    assert lines[0].endswith("...") and "second line" in lines[-1]


# --- item extras: the `items` channel and trending scores (read by the server) ---------------

GENRES = ("Comedy", "Drama", "Horror", "Action")  # item i{k} is in the block of genre k // 10
NEWEST = 1_600_000_000 + 1000 * 60 + 10  # after every row of interactions_csv()


def items_csv() -> str:
    """Metadata for i0..i38 (i39 has none, i0 two genres) plus a row of an item never seen."""
    rows = ["item_id,title,genre", 'i0,"Zero, the first",Comedy|Drama']
    rows += [f"i{k},Title {k},{GENRES[k // 10]}" for k in range(1, 39)]
    return "\n".join([*rows, "never-seen,Ghost,Horror"]) + "\n"


def expected_genre(item_id: str) -> str:
    k = int(item_id[1:])
    return "Comedy|Drama" if k == 0 else "" if k == 39 else GENRES[k // 10]


@pytest.fixture(scope="module")
def model_with_items(tmp_path_factory) -> Path:
    """Trained once: three users consumed i25 at the newest time, so with a half-life of
    0.001 days (86 s) i25 trends while older, more popular items do not."""
    recent = "".join(f"u{user},i25,{NEWEST}\n" for user in (1, 2, 4))
    base = make_layout(
        tmp_path_factory.mktemp("items"),
        hyperparameters={**FAST, "trending_half_life_days": "0.001"},
        channels={"training": interactions_csv() + recent, "items": items_csv()},
    )
    assert training_job.run_sagemaker_job(base) == 0
    return base / "model"


def test_items_channel_gives_attributes_aligned_to_the_item_ids(model_with_items):
    artifact = load(model_with_items)
    assert sorted(artifact.extra) == [
        "item_attribute.genre",
        "item_attribute.title",
        "item_trending",
        "seen_timestamps",  # the web page's dated history
    ]
    genres = artifact.extra["item_attribute.genre"]
    assert genres.tolist() == [expected_genre(i) for i in artifact.item_ids.tolist()]
    titles = dict(
        zip(artifact.item_ids.tolist(), artifact.extra["item_attribute.title"], strict=True)
    )
    assert titles["i0"] == "Zero, the first" and titles["i39"] == ""


def test_served_genre_filter_returns_only_items_of_that_genre(model_with_items):
    from mfrec.serve.recommender import Recommender
    from mfrec.serve.requests import request_from_fields

    rec = Recommender(load(model_with_items), "cpu")
    fields = {"user_id": "u0", "top_n": "8", "include_attributes": {"genre": "Horror"}}
    (answer,) = rec.answer([request_from_fields(fields)])
    horror = {f"i{k}" for k in range(20, 30)}
    u0 = rec.artifact.user_ids.tolist().index("u0")
    seen = set(rec.artifact.item_ids[rec.artifact.seen_items(u0)].tolist())
    assert set(answer.item_ids) <= horror - seen
    assert len(answer.item_ids) == min(8, len(horror - seen)) > 0
    # a multi-valued genre matches each of its values: i0 is "Comedy|Drama"
    drama_filter = {"include_attributes": {"genre": ["Drama"]}}
    (drama,) = rec.answer([request_from_fields({"top_n": "3", **drama_filter})])
    popularity = rec.artifact.item_popularity
    order = [rec.artifact.item_ids[i] for i in np.argsort(-popularity, kind="stable")]
    assert list(drama.item_ids) == [i for i in order if "Drama" in expected_genre(i)][:3]


def test_served_trending_request_puts_the_recent_item_first(model_with_items):
    from mfrec.serve.recommender import Recommender
    from mfrec.serve.requests import request_from_fields

    rec = Recommender(load(model_with_items), "cpu")
    (trending,) = rec.answer([request_from_fields({"type": "trending", "top_n": "2"})])
    (popular,) = rec.answer([request_from_fields({"top_n": "1"})])
    assert trending.item_ids[0] == "i25" and popular.item_ids[0] != "i25"
    # three rows at the newest time count 1 each; the next rows are >= 990 s (11 half-lives) older
    assert trending.scores[0] == pytest.approx(3.0, abs=0.01) and trending.scores[1] < 0.01


def test_malformed_items_channel_fails_before_training(tmp_path):
    base = make_layout(tmp_path, channels={"training": interactions_csv(), "items": "a,b\n1,2\n"})
    assert training_job.run_sagemaker_job(base) == 1
    first_line = failure_text(base).splitlines()[0]
    assert first_line.startswith("DataValidationError: item metadata file ")
    assert "has no item id column (columns: a, b); give it a header row" in first_line
    assert model_files(base) == []


def test_local_mode_items_flag_and_bad_half_life(tmp_path):
    from mfrec.cli import main

    data, items = tmp_path / "data.csv", tmp_path / "items.csv"
    data.write_text(interactions_csv())
    items.write_text("item_id,genre\ni1,Comedy\ni1,Drama\n")
    local = ["train", "--data", str(data), "--model-dir", str(tmp_path / "model")]
    local += ["--output-dir", str(tmp_path / "out")]
    assert main([*local, "--items", str(items)]) == 1
    assert (
        "1 repeated item id(s) (e.g. 'i1'); keep one row per item"
        in (tmp_path / "out" / "failure").read_text()
    )
    assert main([*local, "--set", "trending_half_life_days=-2"]) == 1
    assert (
        "trending_half_life_days must be a number of days greater than 0"
        in (tmp_path / "out" / "failure").read_text()
    )
    assert main(["train", "--items", str(items)]) == 1  # needs --data


def test_job_hyperparameters_are_documented():
    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    for name in training_job.JOB_HYPERPARAMETERS:
        assert f"| `{name}` |" in text, f"docs/training.md does not document {name}"
