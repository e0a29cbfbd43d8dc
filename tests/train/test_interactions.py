"""Interactions helpers against the obvious NumPy answers."""

from __future__ import annotations

import numpy as np
import pytest

from mfrec.train.interactions import Interactions, sorted_unique


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("size", [0, 1, 2, 1000])
def test_sorted_unique_is_numpys_unique(dtype, size):
    values = np.random.default_rng(size).integers(0, 50, size).astype(dtype)
    found = sorted_unique(values)
    expected = np.unique(values)
    assert found.dtype == expected.dtype
    np.testing.assert_array_equal(found, expected)


def test_to_csr_lists_each_users_distinct_items_sorted():
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, 7, 200), rng.integers(0, 9, 200)
    users[-1] = 5  # user 6 may have no row; user 5 has a repeat at least
    data = Interactions(
        user_idx=users,
        item_idx=items,
        user_ids=np.array([f"u{u}" for u in range(8)]),
        item_ids=np.array([f"i{i}" for i in range(9)]),
    )
    indptr, indices = data.to_csr()
    assert indptr.dtype == indices.dtype == np.int64 and len(indptr) == 9
    for user in range(8):
        expected = sorted(set(items[users == user].tolist()))
        assert indices[indptr[user] : indptr[user + 1]].tolist() == expected
