"""``mfrec demo`` as a new user sees it (issue 18): each thing said once, the popularity
fallback's counts explained, the epochs labelled; the real CLI, the real server."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mfrec.cli import main

QUICK = ["model=sgd", "recency_min_weight=1", "num_epochs=2", "embedding_dim=8", "device=cpu"]


def write_data(folder):
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp"]
    for k in range(1_200):
        lines.append(f"u{k % 40},i{rng.integers(0, 30)},{1_600_000_000 + k}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    genres = ("Comedy", "Drama|Comedy", "Horror")
    items = ["item_id,title,genre"] + [f"i{i},Film {i},{genres[i % 3]}" for i in range(30)]
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    return folder / "data.csv", folder / "items.csv"


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    data, items = write_data(folder)
    argv = ["demo", "--workdir", str(folder / "run"), "--data", str(data), "--items", str(items)]
    argv += ["--users", "2", "--top-n", "3", "--set", *QUICK]
    capture = pytest.MonkeyPatch()
    import io
    import sys

    out, err = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", err)
    try:
        code = main(argv)
    finally:
        capture.undo()
        import logging

        logging.getLogger().handlers.clear()  # main() pointed the root logger at ``err``
    return code, out.getvalue(), err.getvalue(), folder / "run"


def test_the_demo_runs_and_says_each_thing_once(demo_output):
    code, out, err, _ = demo_output
    assert code == 0, err[-2000:]
    assert len(re.findall(r"imported [\d,]+ interactions", err)) == 1  # step 1's, not again
    assert len(re.findall(r"training config: ", err)) == 1
    assert len(re.findall(r"import options: ", err)) == 1
    assert len(re.findall(r"INFO mfrec\.train\.device: device: ", err)) == 1
    assert len(re.findall(r"item metadata from ", err)) <= 1  # the request file reads the model
    assert (out + err).count("only 40 users; Amazon Personalize recommends") == 1  # the report's


def test_the_demo_explains_the_popularity_fallback_and_the_epochs(demo_output):
    _, out, _, run = demo_output
    assert "its scores are their training interaction counts, not model scores" in out
    assert "interaction counts weighted by recency" in out
    metrics = json.loads((run / "output" / "metrics.json").read_text())["metrics"]
    best, fitted = metrics["best_epoch"], metrics["fit_epochs"]
    assert fitted >= best >= 1 and metrics["epochs_trained"] == best and metrics["refit"]
    assert (
        f"sgd kept: best VALID NDCG@10 at epoch {best} of {fitted} fitted; then refitted on all "
        f"the data for {best} epochs (the model served)" in out
    )


def test_the_demo_batch_is_one_multirecord_request(demo_output):
    _, out, _, run = demo_output
    requests = (run / "requests.jsonl").read_text().splitlines()
    assert len(requests) == 2 + 1 + 1  # users, the unknown user, the trending request
    rows = (run / "transform" / "requests.jsonl.out").read_text().splitlines()
    assert len(rows) == 4 * 3
    assert "MultiRecord" in out and "SingleRecord" not in out


def test_demo_help_has_no_restructuredtext(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":data:" not in text
    assert "embedded synthetic dataset" in text
