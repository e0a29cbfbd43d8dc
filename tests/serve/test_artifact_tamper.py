"""Tampered model folders are refused at load with one clear line (issue 17, item 13): the
checksums are required, the manifest's shape is checked, and arrays that would be served
wrongly (NaN scores, training items outside the catalogue) are refused, not served."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from known_answer import known_answer

from mfrec.local_server import free_port
from mfrec.train.artifact import ARRAYS, MANIFEST, load, save
from mfrec.train.errors import ArtifactError


@pytest.fixture
def model_dir(tmp_path):
    return save(known_answer(), tmp_path / "model")


def edit_manifest(model_dir, change) -> None:
    path = model_dir / MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(change(manifest)))


def edit_arrays(model_dir, name, change) -> None:
    """Rewrite one array and its checksum, as a careful attacker (or a buggy tool) would."""
    with np.load(model_dir / ARRAYS) as data:
        arrays = {key: data[key] for key in data.files}
    arrays[name] = change(arrays[name])
    np.savez(model_dir / ARRAYS, **arrays)
    digest = hashlib.sha256((model_dir / ARRAYS).read_bytes()).hexdigest()
    edit_manifest(model_dir, lambda m: {**m, "files": {ARRAYS: digest}})


def without(key):
    return lambda manifest: {k: v for k, v in manifest.items() if k != key}


MANIFEST_CASES = {
    "no files": (without("files"), "has no checksums"),
    "files a list": (lambda m: {**m, "files": [ARRAYS]}, "has no checksums"),
    "files bad digest": (lambda m: {**m, "files": {ARRAYS: 5}}, "not a file name and a SHA-256"),
    "files path": (
        lambda m: {**m, "files": {**m["files"], "../x": "0" * 64}},
        "not a file name and a SHA-256",
    ),
    "a list": (lambda m: [m], "must hold a JSON object, not list"),
    "no config": (without("config"), "'config' must be a JSON object"),
    "config a string": (lambda m: {**m, "config": "x"}, "'config' must be a JSON object"),
    "version a string": (
        lambda m: {**m, "format_version": "1"},
        "format_version must be the integer 1, got '1' \\(str\\)",
    ),
    "version 2": (lambda m: {**m, "format_version": 2}, "format version 2 is not supported"),
    "other format": (lambda m: {**m, "format": "x"}, "not an mfrec model manifest"),
}


@pytest.mark.parametrize("change, message", MANIFEST_CASES.values(), ids=MANIFEST_CASES)
def test_a_manifest_of_the_wrong_shape_is_refused(model_dir, change, message):
    edit_manifest(model_dir, change)
    with pytest.raises(ArtifactError, match=message):
        load(model_dir)


def test_a_changed_array_is_refused_even_without_the_files_list(model_dir):
    edit_manifest(model_dir, without("files"))
    with pytest.raises(ArtifactError, match="has no checksums"):
        load(model_dir)


def test_a_deeply_nested_manifest_is_refused(model_dir):
    (model_dir / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        load(model_dir)


def _nan(values):
    values = values.copy()
    values.flat[0] = np.nan
    return values


ARRAY_CASES = {
    "nan item embedding": ("item_embeddings", _nan, "item_embeddings holds 1 NaN or infinite"),
    "inf user bias": ("user_biases", lambda v: v + np.inf, "user_biases holds 4 NaN or infinite"),
    "seen index too big": ("seen_indices", lambda v: v + 100, "seen_indices holds item indices"),
    "seen index negative": ("seen_indices", lambda v: v - 1, "seen_indices holds item indices"),
    "indptr not rising": ("seen_indptr", lambda v: v[::-1].copy(), "seen_indptr must rise"),
    "indptr length": ("seen_indptr", lambda v: v[:-1], "seen_indptr has shape"),
    "duplicate item ids": ("item_ids", lambda v: np.full_like(v, "i0"), "item_ids holds dup"),
    "ids as numbers": ("user_ids", lambda v: np.arange(len(v)), "user_ids must be a 1-D array"),
    "text embeddings": ("user_embeddings", lambda v: v.astype(str), "dtype <U"),
    "1-D embeddings": ("item_embeddings", lambda v: v[:, 0], "item_embeddings must be 2-D"),
    "missing array": ("item_biases", None, "does not hold the expected arrays"),
}


@pytest.mark.parametrize("name, change, message", ARRAY_CASES.values(), ids=ARRAY_CASES)
def test_arrays_that_would_be_served_wrongly_are_refused(model_dir, name, change, message):
    if change is None:
        with np.load(model_dir / ARRAYS) as data:
            arrays = {key: data[key] for key in data.files if key != name}
        np.savez(model_dir / ARRAYS, **arrays)
        digest = hashlib.sha256((model_dir / ARRAYS).read_bytes()).hexdigest()
        edit_manifest(model_dir, lambda m: {**m, "files": {ARRAYS: digest}})
    else:
        edit_arrays(model_dir, name, change)
    with pytest.raises(ArtifactError, match=message):
        load(model_dir)


def test_the_server_refuses_a_tampered_model_with_one_line_and_exits(model_dir):
    """The model loads in gunicorn's master before any worker starts: a bad model is one line
    on stderr and exit 1, never a worker that boots, crashes and is restarted forever."""
    edit_arrays(model_dir, "seen_indices", lambda v: v + 100)
    command = [sys.executable, "-m", "mfrec", "serve", "--model-dir", str(model_dir)]
    command += ["--host", "127.0.0.1", "--port", str(free_port())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "seen_indices holds item indices outside 0..7" in result.stderr
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr
