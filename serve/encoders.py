"""Recommendations to response bytes: CSV, JSON Lines and JSON, in mfrec's shape or Amazon
Personalize's batch output shape (``style``). :data:`mfrec.serve.codecs.ENCODERS` maps mime
types to these functions; ``answers`` pairs every record of a body with its
:class:`~mfrec.serve.requests.Recommendation`, in body order.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from mfrec.serve import personalize
from mfrec.serve.csvrows import csv_rows
from mfrec.serve.requests import Recommendation

CSV_CHUNK_ROWS = 65_536  # rows formatted as one byte matrix: bounds its memory for long ids

if TYPE_CHECKING:
    from mfrec.serve.codecs import Answers, Record


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _scores(answer: Recommendation, missing) -> list:
    """The scores as Python floats; NaN (an item the model does not know) as ``missing``."""
    scores = answer.scores.tolist()
    if np.isnan(answer.scores).any():
        scores = [missing if score != score else score for score in scores]
    return scores


def encode_csv(answers: Answers, style: str = "mfrec") -> bytes:
    """``user_id,item_id,score`` rows, best first, records in order, no header, and no trailing
    newline (SageMaker's AssembleWith=Line adds one per response); scores with 6 decimals.

    The first column is the record's subject (the item id for similar items, empty for popular
    items). A record that failed gives ``user_id,,error: <reason>``; one left with no items
    gives ``user_id,,``; an item the model does not know (ranking) has an empty score. Runs of
    plain records are formatted as arrays (:mod:`mfrec.serve.csvrows`), the rest row by row.
    """
    parts: list[bytes] = []
    run: list[tuple[Record, Recommendation]] = []
    for record, answer in answers:
        if answer.error is None and len(answer.item_ids) and not np.isnan(answer.scores).any():
            run.append((record, answer))
            continue
        parts += _csv_run(run)
        run = []
        parts.append(_utf8(_csv_lines(record, answer)))
    parts += _csv_run(run)
    return b"\n".join(parts)


def _utf8(text: str) -> bytes:
    """Text as UTF-8; the decoders refuse ids that are not valid Unicode, and anything that
    slipped through becomes U+FFFD here rather than a failed response."""
    return text.encode("utf-8", "replace")


def _csv_run(run: list[tuple[Record, Recommendation]]) -> list[bytes]:
    """Rows of records without errors, formatted together in chunks of about
    :data:`CSV_CHUNK_ROWS` rows (each chunk's byte matrix is as wide as its widest field)."""
    parts, start, rows = [], 0, 0
    for end, (_, answer) in enumerate(run, start=1):
        rows += len(answer.item_ids)
        if rows >= CSV_CHUNK_ROWS or end == len(run):
            chunk = run[start:end]
            subjects = [record.subject for record, _ in chunk]
            item_ids, scores = [a.item_ids for _, a in chunk], [a.scores for _, a in chunk]
            fast = csv_rows(subjects, item_ids, scores)
            if fast is None:
                fast = _utf8("\n".join(_csv_lines(record, answer) for record, answer in chunk))
            parts.append(fast)
            start, rows = end, 0
    return parts


def _csv_lines(record: Record, answer: Recommendation) -> str:
    """One record's rows, formatted one by one (quoting, errors, empty lists, NaN scores)."""
    prefix = _csv_field(record.subject) + ","
    if answer.error is not None:
        return prefix + "," + _csv_field("error: " + answer.error)
    if not len(answer.item_ids):
        return prefix + ","
    ids = [_csv_field(item_id) for item_id in answer.item_ids.tolist()]
    scores = ["" if s != s else f"{s:.6f}" for s in answer.scores.tolist()]
    return "\n".join(f"{prefix}{i},{s}" for i, s in zip(ids, scores, strict=True))


def _object(record: Record, answer: Recommendation, style: str) -> dict:
    """One record's answer as a JSON object (NaN scores as null)."""
    if style == "personalize":  # Amazon Personalize's batch inference output
        if answer.error is not None:
            return {"input": record.raw, "output": None, "error": answer.error}
        scores = _scores(answer, None)
        if answer.probabilities is not None:  # a Personalize-shaped record: [0, 1] scores
            scores = personalize.scores_of(answer)
        output = {"recommendedItems": answer.item_ids.tolist(), "scores": scores}
        return {"input": record.raw, "output": output, "error": None}
    if personalize.all_personalize([record]):  # Personalize's real-time response shape
        return personalize.response_object(record.request, answer)
    request = record.request
    if request is None:
        obj: dict = {"user_id": record.subject}
    else:
        obj = {"type": request.type} if request.type != "user" else {}
        obj.update(
            {
                k: v
                for k, v in (("user_id", request.user_id), ("item_id", request.item_id))
                if v is not None
            }
        )
    if answer.error is not None:
        return {**obj, "error": answer.error}
    obj.update(item_ids=answer.item_ids.tolist(), scores=_scores(answer, None))
    return {**obj, "note": answer.note} if answer.note else obj


def _json(obj: dict) -> str:
    """One answer as JSON text (ASCII: a lone surrogate echoed from the input stays escaped);
    an echoed value JSON cannot hold (a huge number) is written as its description."""
    return json.dumps(obj, default=str)


def encode_jsonlines(answers: Answers, style: str = "mfrec") -> bytes:
    """One JSON object per record and line, no trailing newline."""
    return "\n".join(_json(_object(r, a, style)) for r, a in answers).encode("utf-8")


def encode_json(answers: Answers, style: str = "mfrec") -> bytes:
    """``{"predictions": [one object per record]}`` (the SageMaker built-in algorithms' shape);
    a body of Personalize-shaped records: Personalize's response object, one line per record."""
    if style == "mfrec" and personalize.all_personalize([record for record, _ in answers]):
        return encode_jsonlines(answers, style)
    objects = ",".join(_json(_object(r, a, style)) for r, a in answers)
    return ('{"predictions":[' + objects + "]}").encode("utf-8")
