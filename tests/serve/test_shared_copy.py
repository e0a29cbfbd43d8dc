"""The server's copy of the item vectors (``mfrec.serve.tensors.shared_copy``): equal values in
memory of its own, which the model's tensors use without copying it again."""

from __future__ import annotations

import numpy as np
import torch
from known_answer import known_answer

from mfrec.serve.tensors import ModelTensors, shared_copy


def test_the_copy_holds_the_same_values_in_memory_of_its_own(tmp_path):
    path = tmp_path / "vectors.npy"
    np.save(path, np.arange(30, dtype=np.float32).reshape(10, 3) / 7)
    mapped = np.load(path, mmap_mode="r")
    copy = shared_copy(mapped)
    assert copy.dtype == mapped.dtype and copy.shape == mapped.shape
    np.testing.assert_array_equal(copy, mapped)
    assert not np.shares_memory(copy, mapped)
    assert copy.flags.c_contiguous and copy.flags.writeable  # torch shares it, no copy


def test_an_empty_array_is_copied_too():
    copy = shared_copy(np.empty((0, 4), dtype=np.float32))
    assert copy.shape == (0, 4)


def test_the_tensors_share_the_copy_instead_of_copying_it():
    artifact = known_answer()
    artifact.item_embeddings = shared_copy(artifact.item_embeddings)
    tensors = ModelTensors(artifact, torch.device("cpu"))
    assert np.shares_memory(tensors.item_embeddings.numpy(), artifact.item_embeddings)
