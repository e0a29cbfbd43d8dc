"""CSV rows of a real-time answer (formatted in Python) are the bytes the array path writes."""

import numpy as np
import pytest

from mfrec.serve import csvrows
from mfrec.serve.csvrows import csv_rows

# Half-way cases of the sixth decimal, signs, zeros and large values, next to random scores.
EDGES = [0.0000005, 0.0000015, 2.5e-6, -2.5e-6, -1e-9, -0.0, 0.0, 1.0, -0.5, 123456.7890125, 1e11]


def records(rng: np.random.Generator):
    ids = np.array(["1", "50", "ü", "é-2", "a\x00b", "", "181", "x" * 30], dtype=object)
    scores = np.concatenate([EDGES, rng.normal(0, 3, 29), rng.random(20).round(6)])
    subjects, item_ids, record_scores, start = [], [], [], 0
    for n in (1, 5, 25, 29):
        subjects.append(f"u{n}" if n != 5 else "ü-user")
        item_ids.append(rng.choice(ids, n))
        record_scores.append(scores[start : start + n])
        start += n
    return subjects, item_ids, record_scores


def test_few_rows_are_the_bytes_of_the_array_path(monkeypatch):
    subjects, item_ids, scores = records(np.random.default_rng(0))
    few = csv_rows(subjects, item_ids, scores)
    monkeypatch.setattr(csvrows, "FEW_ROWS", 0)  # the array path for every size
    assert few == csv_rows(subjects, item_ids, scores)
    assert few.split(b"\n")[0].startswith(b"u1,")
    assert b"-0.000000" not in few and b"\x00" not in few


@pytest.mark.parametrize("few_rows", [200, 0])
def test_either_path_refuses_what_needs_quoting(monkeypatch, few_rows):
    monkeypatch.setattr(csvrows, "FEW_ROWS", few_rows)
    one = [np.array([1.5])]
    assert csv_rows(["x"], [np.array(["a,b"], dtype=object)], one) is None
    assert csv_rows(['x"'], [np.array(["a"], dtype=object)], one) is None
    assert csv_rows(["x\r"], [np.array(["a"], dtype=object)], one) is None
    assert csv_rows(["x"], [np.array(["a"], dtype=object)], one) == b"x,a,1.500000"
