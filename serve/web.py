"""The demo web page at ``GET /`` and the small read-only JSON routes it reads.

The page is a client of the same API as everyone else: its lists come from ``POST
/invocations`` with the request types and filters of :mod:`mfrec.serve.requests`, rendered by
``static/web.js``. The first view of a user (``/?user_id=685``) or an item (``/?item_id=50``) is
also rendered here, so the page reads without JavaScript and every item is a plain link.

Read-only JSON routes (for the page; SageMaker endpoints route only ``/ping`` and
``/invocations``, so the page is for ``mfrec serve`` and ``docker run -p 8080:8080``):

``GET /web/search?q=star&limit=10``
    Items whose title (or id) contains ``q``, most popular first.
``GET /web/items?id=50&id=181``
    Titles and attributes of those items (unknown ids are left out).
``GET /web/users/<user_id>/history?limit=10``
    The user's training items, newest first when the model has dates.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request

from mfrec.serve import codecs
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Recommendation, RecordError, request_from_fields
from mfrec.serve.webcatalog import WebCatalog, format_score

blueprint = Blueprint("web", __name__, static_folder="static", static_url_path="/web/static")
MAX_LIMIT = 500


class BadQuery(codecs.HttpError):
    status = 400


def _shelf() -> tuple[Recommender, WebCatalog]:
    """The app's recommender and its :class:`WebCatalog` (built once per model)."""
    recommender = current_app.extensions["mfrec"].require()
    cached = current_app.extensions.get("mfrec.web")
    if cached is None or cached.recommender is not recommender:
        cached = current_app.extensions["mfrec.web"] = WebCatalog(recommender)
    return recommender, cached


def _limit(default: int) -> int:
    text = request.args.get("limit", "").strip() or str(default)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadQuery(f"limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


@blueprint.get("/")
def index():
    """The page; with ``user_id`` or ``item_id`` it opens on that user's or item's list."""
    recommender, shelf = _shelf()
    fields = {k: request.args.get(k, "").strip() for k in ("user_id", "item_id", "top_n")}
    fields["top_n"] = fields["top_n"] or str(min(10, recommender.max_top_n))
    return render_template(
        "index.html",
        **fields,
        **first_view(recommender, shelf, **fields),
        facets=shelf.facets,
        has_trending=recommender.catalog.has_list("trending"),
        max_top_n=recommender.max_top_n,
        num_users=recommender.num_users,
        num_items=recommender.num_items,
    )


def first_view(
    recommender: Recommender, shelf: WebCatalog, user_id: str, item_id: str, top_n: str
) -> dict:
    """What the page opens on: the answer to the one record the query's fields describe, its
    rows with titles, and the user's history (nothing without ``user_id`` or ``item_id``)."""
    if not (user_id or item_id):
        return {"mode": "", "answer": None}
    fields = {"item_id": item_id} if item_id else {"user_id": user_id}
    try:
        answer = recommender.answer([request_from_fields({**fields, "top_n": top_n})])[0]
    except RecordError as exc:
        answer = Recommendation.failed(str(exc))
    known = item_id in recommender.catalog.index if item_id else user_id in recommender.user_index
    kind = "score" if known else "popular"
    rows = shelf.details(answer.item_ids.tolist())
    for row, score in zip(rows, answer.scores.tolist(), strict=True):
        row["score"] = format_score(score, kind)
    history, total = ([], 0) if item_id else shelf.history(user_id, limit=10)
    return {
        "mode": "similar_items" if item_id else "user",
        "answer": answer,
        "known": known,
        "kind": kind,
        "heading": _heading(shelf, user_id, item_id),
        "rows": rows,
        "history": history,
        "history_total": total,
        "has_dates": shelf.has_dates,
    }


def _heading(shelf: WebCatalog, user_id: str, item_id: str) -> str:
    if not item_id:
        return f"Recommendations for {user_id}"
    title = shelf.name(item_id)
    return f"Items like {item_id}" + (f": {title}" if title != item_id else "")


@blueprint.get("/web/search")
def search():
    _, shelf = _shelf()
    return jsonify({"items": shelf.search(request.args.get("q", ""), _limit(10))})


@blueprint.get("/web/items")
def items():
    _, shelf = _shelf()
    item_ids = request.args.getlist("id")
    if len(item_ids) > MAX_LIMIT:
        raise BadQuery(f"ask for at most {MAX_LIMIT} ids at a time, got {len(item_ids)}")
    return jsonify({"items": shelf.details(item_ids)})


@blueprint.get("/web/users/<user_id>/history")
def history(user_id: str):
    recommender, shelf = _shelf()
    rows, total = shelf.history(user_id, _limit(10))
    known = user_id in recommender.user_index
    return jsonify({"user_id": user_id, "known": known, "items": rows, "total": total})
