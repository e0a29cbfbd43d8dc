"""The model's checksums computed ahead of the load (mfrec.train.digests): the same digest, and
a file changed after it was hashed is still refused."""

import hashlib
import os

import numpy as np
import pytest
from known_answer import known_answer

from mfrec.train import digests
from mfrec.train.artifact import ARRAYS, hash_in_background, load, save
from mfrec.train.errors import ArtifactError


def test_a_digest_computed_ahead_is_the_file_digest_and_used_once(tmp_path, monkeypatch):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 1000)
    monkeypatch.setattr(digests, "BLOCK", 4096)  # several blocks
    digests.start([path, tmp_path / "missing"])
    assert digests.sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not digests._PENDING  # taken by the load it was for
    (tmp_path / "empty").write_bytes(b"")
    assert digests.sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_a_model_loads_with_its_checksums_computed_ahead(tmp_path):
    model_dir = save(known_answer(), tmp_path / "model")
    hash_in_background(model_dir)
    loaded = load(model_dir)
    np.testing.assert_array_equal(loaded.item_embeddings, known_answer().item_embeddings)


def test_a_file_changed_after_it_was_hashed_ahead_is_refused(tmp_path):
    model_dir = save(known_answer(), tmp_path / "model")
    hash_in_background(model_dir)
    for future in list(digests._PENDING.values()):
        future.result()  # hashed before the change
    path = model_dir / ARRAYS
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the last array's data: the arrays still read
    path.write_bytes(bytes(data))
    # A later write has a later modification time (set here: two writes within the file
    # system's clock tick can share one).
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        load(model_dir)


def test_the_checksum_error_is_reported_when_the_arrays_are_broken_too(tmp_path):
    model_dir = save(known_answer(), tmp_path / "model")
    path = model_dir / ARRAYS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        load(model_dir)
    hash_in_background(tmp_path / "nowhere")  # no manifest: left for load to report
