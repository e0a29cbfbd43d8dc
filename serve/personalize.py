"""Amazon Personalize's real-time API on mfrec: records that use Personalize's field names become
mfrec :class:`~mfrec.serve.requests.Request` records, and their answers are written in
Personalize's response shapes.

============================================  =========================================
Personalize request (GetRecommendations,      mfrec request
GetPersonalizedRanking)
============================================  =========================================
``{"userId": "685", "numResults": 5}``        ``user``: the user's best items
``{"itemId": "50", "numResults": 10}``        ``similar_items`` (related items)
``{"userId": "685", "inputList": [...]}``     ``rank``: those items re-ordered, unknown last
``{"numResults": 10}``                        ``popular``
``filterArn`` / ``filterExpression`` (mfrec)  a filter (:mod:`mfrec.serve.filters`)
and ``filterValues``
``context``                                   accepted, not used (mfrec models take none)
``recommenderArn``, ``campaignArn``           accepted, ignored (one model per endpoint)
============================================  =========================================

A record is Personalize-shaped when every field is one of :data:`PERSONALIZE_FIELDS` and one of
them is more than a filter field. Answers (JSON): ``{"itemList": [{"itemId": "...", "score":
0.0123}, ...], "recommendationId": "RID-..."}``, or ``{"personalizedRanking": [...],
"recommendationId": "RID-..."}`` for ``inputList``; the scores are
:mod:`mfrec.serve.probabilities`' [0, 1] scores, and items from the popularity fallback carry
``"reason": ["Popular item"]``.
"""

from __future__ import annotations

import uuid

import numpy as np

from mfrec.serve import exploration, filters
from mfrec.serve.requests import (
    _PARSERS,
    NO_FILTERS,
    Filters,
    Recommendation,
    RecordError,
    Request,
    _id,
    _ids,
    _int,
)

#: Personalize's runtime fields (GetRecommendations, GetPersonalizedRanking) mfrec accepts, and
#: ``filterExpression`` (mfrec's inline filter).
PERSONALIZE_FIELDS = (
    "userId",
    "itemId",
    "inputList",
    "numResults",
    "filterArn",
    "filterValues",
    "filterExpression",
    "context",
    "recommenderArn",
    "campaignArn",
    *exploration.PERSONALIZE_FIELDS,  # explorationWeight... (campaign settings, per request)
)
#: Fields only Personalize records have (mfrec's own records take the rest too).
_PERSONALIZE_ONLY = ("inputList", "context", "recommenderArn", "campaignArn")
#: Filter fields accepted in both shapes (snake_case too in mfrec's), by what they give.
FILTER_FIELDS = {
    "filterExpression": "expression",
    "filter_expression": "expression",
    "filterArn": "arn",
    "filter_arn": "arn",
    "filterValues": "values",
    "filter_values": "values",
}
POPULAR_REASON = "Popular item"  # Personalize's reason for a popular placeholder item


def is_personalize(obj) -> bool:
    """Whether a decoded record uses Personalize's field names only.

    Raises
    ------
    RecordError
        The record mixes Personalize-only fields (``inputList``...) with mfrec's.
    """
    if not isinstance(obj, dict) or not obj:
        return False
    keys = set(obj)
    if keys <= set(PERSONALIZE_FIELDS):
        return bool(keys - set(FILTER_FIELDS))
    if mixed := sorted(keys & set(_PERSONALIZE_ONLY)):
        others = sorted(keys - set(PERSONALIZE_FIELDS))
        raise RecordError(
            f"the record mixes Amazon Personalize's fields ({', '.join(mixed)}) with "
            f"others ({', '.join(others)}); use Personalize's names only "
            f"({', '.join(PERSONALIZE_FIELDS)}) or mfrec's"
        )
    return False


def split_filter_fields(obj: dict) -> tuple[dict, dict]:
    """(the record without its filter fields, {"expression"|"arn"|"values": value})."""
    found = {FILTER_FIELDS[k]: v for k, v in obj.items() if k in FILTER_FIELDS and v is not None}
    if not found:
        return obj, found
    return {k: v for k, v in obj.items() if k not in FILTER_FIELDS}, found


def bound_filter(fields: dict, user_id: str | None, item_id: str | None):
    """The request's :class:`~mfrec.serve.filters.BoundFilter` from :func:`split_filter_fields`'
    fields (None without a filter); a filter problem is the record's error."""
    try:
        return filters.request_filter(
            fields.get("expression"), fields.get("arn"), fields.get("values"), user_id, item_id
        )
    except filters.REQUEST_ERRORS as exc:
        raise RecordError(f"filter: {exc}") from None


def request_from_personalize(obj: dict) -> Request:
    """The mfrec :class:`Request` of a Personalize-shaped record (``personalize=True``).

    Raises
    ------
    RecordError
        A field has a bad value, or a filter cannot be read.
    """
    for name in ("recommenderArn", "campaignArn"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            raise RecordError(f"{name} must be a string (it is ignored: one model per endpoint)")
    if obj.get("context") is not None and not isinstance(obj["context"], dict):
        raise RecordError('context must be an object like {"DEVICE": "mobile"} (it is not used)')
    user_id = _id(obj["userId"], "userId") if obj.get("userId") is not None else None
    item_id = _id(obj["itemId"], "itemId") if obj.get("itemId") is not None else None
    top_n = _int(obj["numResults"], "numResults") if obj.get("numResults") is not None else None
    item_ids = _ids(obj["inputList"], "inputList") if obj.get("inputList") is not None else None
    if item_ids is not None and item_id is not None:
        raise RecordError("give inputList (a ranking) or itemId (related items), not both")
    expression = bound_filter(split_filter_fields(obj)[1], user_id, item_id)
    explore = {
        exploration.FIELDS[name]: _PARSERS[name](obj[key], key)
        for key, name in exploration.PERSONALIZE_FIELDS.items()
        if obj.get(key) is not None
    }
    return Request.from_fields(
        user_id=user_id,
        item_id=item_id,
        item_ids=item_ids,
        top_n=top_n,
        filters=Filters(expression=expression) if expression is not None else NO_FILTERS,
        exploration=exploration.Exploration(**explore) if explore else None,
        personalize=True,
    )


# --- answers ---------------------------------------------------------------------------------


def recommendation_id() -> str:
    """A fresh ``RID-<uuid>``, the form of Personalize's recommendationId."""
    return f"RID-{uuid.uuid4()}"


def scores_of(answer: Recommendation) -> list[float]:
    """The answer's [0, 1] scores (0 for an item the model does not know)."""
    if answer.probabilities is not None:
        scores = answer.probabilities
    else:  # not computed (a request built without personalize=True): the scores themselves
        scores = np.clip(np.nan_to_num(answer.scores, nan=0.0), 0.0, 1.0)
    return [0.0 if s != s else float(s) for s in np.asarray(scores, dtype=np.float64).tolist()]


def response_object(request: Request | None, answer: Recommendation) -> dict:
    """One answer in Personalize's response shape (``{"error": ...}`` for a failed record)."""
    if answer.error is not None:
        return {"error": answer.error}
    items = []
    for item_id, score in zip(answer.item_ids.tolist(), scores_of(answer), strict=True):
        item = {"itemId": item_id, "score": score}
        if answer.basis == "popularity":
            item["reason"] = [POPULAR_REASON]
        items.append(item)
    key = "personalizedRanking" if request is not None and request.type == "rank" else "itemList"
    return {key: items, "recommendationId": recommendation_id()}


def all_personalize(records) -> bool:
    """Whether every record of a body is Personalize-shaped (answered one object per line)."""
    return bool(records) and all(_shaped(record) for record in records)


def _shaped(record) -> bool:
    if record.request is not None:
        return record.request.personalize
    try:
        return is_personalize(record.raw)
    except RecordError:
        return False
