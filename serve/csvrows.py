"""CSV rows ``subject,item_id,score`` for many records at once, without Python work per row.

Each field is laid out in a fixed-width byte matrix, padded with NUL bytes, and the NULs are
removed from the whole body in one pass. Scores are printed like ``"%.6f"`` (the digits are
computed with integer arithmetic on arrays). On a 2.5 million row body this is about four times
faster than formatting row by row; it matters once the model runs on a GPU and formatting would
otherwise dominate a batch request. Fields that need CSV quoting fall back to the row-by-row
formatter (:func:`mfrec.serve.encoders.encode_csv` decides).
"""

from __future__ import annotations

import re

import numpy as np

QUOTED_CHARACTERS = ',"\r\n'  # a field holding any of these needs CSV quoting
_QUOTED = np.zeros(256, dtype=bool)  # the same, as bytes by value
_QUOTED[[ord(c) for c in QUOTED_CHARACTERS]] = True
_NEEDS_QUOTING = re.compile(f"[{re.escape(QUOTED_CHARACTERS)}]")
MAX_SCORE = 1e12  # larger magnitudes do not fit the int64 fixed-point digits
FEW_ROWS = 200  # up to this many rows (a real-time answer), Python formats them faster


def score_matrix(scores: np.ndarray) -> np.ndarray:
    """``"%.6f" % score`` of each score as NUL-padded bytes, shape (n, width), uint8."""
    fixed = np.rint(np.abs(scores) * 1e6).astype(np.int64)
    negative = (scores < 0) & (fixed > 0)
    whole, fraction = np.divmod(fixed, 1_000_000)
    digits = max(1, len(str(int(whole.max())))) if len(whole) else 1
    matrix = np.zeros((len(scores), digits + 8), dtype=np.uint8)
    matrix[:, 0] = negative * ord("-")
    rest = whole
    for column in range(digits, 0, -1):
        rest, digit = np.divmod(rest, 10)
        matrix[:, column] = digit + ord("0")
    for column in range(1, digits):  # leading zeros of the integer part (the last one stays)
        matrix[:, column] *= whole >= 10 ** (digits - column)
    matrix[:, digits + 1] = ord(".")
    rest = fraction.astype(np.int32)
    for column in range(digits + 7, digits + 1, -1):
        rest, digit = np.divmod(rest, 10)
        matrix[:, column] = digit + ord("0")
    return matrix


def _bytes_matrix(texts: np.ndarray) -> np.ndarray | None:
    """Strings (object array) as a NUL-padded uint8 matrix of their UTF-8 bytes; None when a
    string needs CSV quoting."""
    try:
        encoded = np.array(texts, dtype="S")  # C speed for ASCII
    except UnicodeEncodeError:
        encoded = np.array([t.encode("utf-8", "replace") for t in texts.tolist()], dtype="S")
    width = max(encoded.dtype.itemsize, 1)
    matrix = (
        encoded.view(np.uint8).reshape(len(texts), width)
        if len(texts)
        else np.zeros((0, width), np.uint8)
    )
    return None if _QUOTED[matrix].any() else matrix


def csv_rows(subjects: list[str], item_ids: list[np.ndarray], scores: list[np.ndarray]):
    """The rows of several records, joined by newlines (no trailing one), as bytes.

    Parameters
    ----------
    subjects : list of str, one per record (first column)
    item_ids : list of object arrays of str, one per record
    scores : list of float arrays, one per record, same lengths as ``item_ids``

    Returns
    -------
    bytes, or None when a field needs quoting or a score is not a finite number below
    ``MAX_SCORE`` (the caller then formats the rows one by one).
    """
    counts = np.array([len(ids) for ids in item_ids])
    all_scores = np.concatenate(scores)
    if not np.isfinite(all_scores).all() or (np.abs(all_scores) >= MAX_SCORE).any():
        return None
    if len(all_scores) <= FEW_ROWS and all_scores.dtype == np.float64:
        return _few_rows(subjects, item_ids, all_scores)
    items = _bytes_matrix(np.concatenate(item_ids))
    subject_matrix = _bytes_matrix(np.array(subjects, dtype=object))
    if items is None or subject_matrix is None:
        return None
    parts = [np.repeat(subject_matrix, counts, axis=0), items, score_matrix(all_scores)]
    rows = np.zeros((len(all_scores), sum(p.shape[1] for p in parts) + 3), dtype=np.uint8)
    column = 0
    for part, separator in zip(parts, (",", ",", "\n"), strict=True):
        rows[:, column : column + part.shape[1]] = part
        column += part.shape[1]
        rows[:, column] = ord(separator)
        column += 1
    return rows.tobytes().replace(b"\0", b"")[:-1]


def _few_rows(subjects: list[str], item_ids: list[np.ndarray], scores: np.ndarray):
    """:func:`csv_rows` formatted row by row, to the same bytes: scores rounded as
    :func:`score_matrix` rounds them (half to even, of the same float64 product), ids encoded
    as UTF-8 with NUL bytes dropped, None when a field needs quoting."""
    lines, values = [], iter(scores.tolist())
    for subject, ids in zip(subjects, item_ids, strict=True):
        for item in ids.tolist():
            score = next(values)
            fixed = round(abs(score) * 1e6)
            whole, fraction = divmod(fixed, 1_000_000)
            sign = "-" if score < 0 and fixed else ""
            lines.append(f"{subject},{item},{sign}{whole}.{fraction:06d}")
    fields = [*subjects, *(item for ids in item_ids for item in ids.tolist())]
    if any(_NEEDS_QUOTING.search(field) for field in fields):
        return None
    return "\n".join(lines).encode("utf-8", "replace").replace(b"\0", b"")
