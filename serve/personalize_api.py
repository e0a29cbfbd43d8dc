"""Amazon Personalize's runtime REST paths on ``mfrec serve``, so that boto3's
``personalize-runtime`` client works with only its ``endpoint_url`` changed.

=============================  ========================  ====================================
Path (botocore's rest-json)    Operation                 Answer
=============================  ========================  ====================================
``POST /recommendations``      GetRecommendations        ``{"itemList": [...], "recommendationId"}``
``POST /personalize-ranking``  GetPersonalizedRanking    ``{"personalizedRanking": [...], ...}``
``POST /action-recommendations``  GetActionRecommendations  400 ``InvalidInputException``
=============================  ========================  ====================================

The body is one JSON object with Personalize's field names; it is read and answered by
:mod:`mfrec.serve.personalize`, the same code that answers such a record on ``/invocations``
(one implementation, two doors). SageMaker endpoints route only ``/ping`` and ``/invocations``,
so there the same bodies go to ``/invocations``.

Errors are answered in Personalize's rest-json error shape: status 400 or 404, the header
``x-amzn-ErrorType`` and a body ``{"__type": "InvalidInputException", "message": "..."}``,
from which botocore raises ``client.exceptions.InvalidInputException`` (or
``ResourceNotFoundException`` for a ``filterArn`` that is not among the deployment's named
filters, ``MFREC_FILTERS``).

Every request first passes :func:`mfrec.serve.auth.require_signature` (SigV4 with
``MFREC_AUTH_KEYS``), and its user's stored PutEvents events are applied to it
(:mod:`mfrec.serve.events.service`) before it reaches the Recommender.
"""

from __future__ import annotations

import json
import threading
import uuid

from flask import Blueprint, Response, current_app, request

from mfrec.serve import auth, codecs, filters, personalize
from mfrec.serve.events import service
from mfrec.serve.requests import RecordError, Request

blueprint = Blueprint("personalize_api", __name__)
blueprint.before_request(auth.require_signature)  # SigV4 (MFREC_AUTH_KEYS)

#: The request fields of each operation that mfrec reads (``filterExpression`` is mfrec's inline
#: filter); ``promotions`` and ``metadataColumns`` are Personalize's, refused as not supported.
RECOMMENDATIONS_FIELDS = frozenset(personalize.PERSONALIZE_FIELDS) - {"inputList"}
RANKING_FIELDS = frozenset(personalize.PERSONALIZE_FIELDS) - {
    "itemId",
    "numResults",
    "recommenderArn",
}
UNSUPPORTED_FIELDS = ("promotions", "metadataColumns")
#: Answers these routes compute at the same time in one worker (as /invocations' own bound,
#: mfrec.serve.app.CONCURRENT_ANSWERS, which cannot be imported here without a cycle).
CONCURRENT_ANSWERS = 4


class PersonalizeError(codecs.HttpError):
    """An error answered in Personalize's shape; :attr:`code` is the exception's name."""

    status = 400
    code = "InvalidInputException"


class InvalidInput(PersonalizeError):
    status, code = 400, "InvalidInputException"


class ResourceNotFound(PersonalizeError):
    status, code = 404, "ResourceNotFoundException"


def _error_response(code: str, message: str, status: int) -> Response:
    line = " ".join(str(message).split())[:1000]
    body = json.dumps({"__type": code, "message": line}, ensure_ascii=True)
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())}
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _body(operation: str, allowed: frozenset) -> dict:
    """The request's JSON object, its fields checked against ``allowed``."""
    try:
        obj = json.loads(request.get_data(cache=False) or b"{}")
    except (ValueError, RecursionError):
        raise InvalidInput(f"{operation}: the body must be a JSON object") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f'{operation}: the body must be a JSON object, like {{"userId": "685"}}')
    if unsupported := sorted(set(obj) & set(UNSUPPORTED_FIELDS)):
        raise InvalidInput(f"{operation}: {', '.join(unsupported)} is not supported by mfrec")
    if unknown := sorted(set(obj) - allowed):
        raise InvalidInput(
            f"{operation}: unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
            f"use {', '.join(sorted(allowed))}"
        )
    return obj


def _request(obj: dict) -> Request:
    """The mfrec request of a Personalize body: a bad field is an InvalidInputException and an
    unknown ``filterArn`` a ResourceNotFoundException."""
    try:
        return personalize.request_from_personalize(obj)
    except RecordError as exc:
        arn = obj.get("filterArn")
        if isinstance(arn, str) and arn and obj.get("filterExpression") is None:
            try:
                filters.deployment_filters().get(arn)
            except filters.NamedFilterError as missing:
                raise ResourceNotFound(str(missing)) from None
        raise InvalidInput(str(exc)) from None


def _answer(request_: Request) -> Response:
    recommender = current_app.extensions["mfrec"].require()
    if not recommender.answer_rows(request_):
        raise InvalidInput(
            f"numResults={request_.top_n} is out of range; use 1 to {recommender.max_top_n}"
        )
    answering = current_app.extensions.setdefault(
        "mfrec.personalize_api", threading.BoundedSemaphore(CONCURRENT_ANSWERS)
    )
    with answering:
        (answer,) = recommender.answer([service.with_events_request(request_)])
    if answer.error is not None:
        raise InvalidInput(answer.error)
    body = json.dumps(personalize.response_object(request_, answer))
    return Response(body, mimetype="application/json")


@blueprint.post("/recommendations")
def get_recommendations():
    obj = _body("GetRecommendations", RECOMMENDATIONS_FIELDS)
    return _answer(_request(obj))


@blueprint.post("/personalize-ranking")
def get_personalized_ranking():
    obj = _body("GetPersonalizedRanking", RANKING_FIELDS)
    if missing := [name for name in ("userId", "inputList") if obj.get(name) is None]:
        raise InvalidInput(f"GetPersonalizedRanking needs {' and '.join(missing)}")
    return _answer(_request(obj))


@blueprint.post("/action-recommendations")
def get_action_recommendations():
    request.get_data(cache=False)  # read, so a kept-alive connection holds no stray bytes
    raise InvalidInput(
        "GetActionRecommendations is not supported: mfrec recommends items, not actions; "
        "use GetRecommendations (POST /recommendations)"
    )


@blueprint.errorhandler(codecs.HttpError)
def personalize_error(exc: codecs.HttpError):
    """Errors of these routes in Personalize's shape (a model not loaded yet: 503)."""
    code = getattr(exc, "code", None)  # PersonalizeError's, or mfrec.serve.auth's 403s
    if code is None:  # e.g. ModelNotLoaded (503), which botocore retries
        code = "InvalidInputException" if exc.status == 400 else type(exc).__name__
    return _error_response(code, str(exc), exc.status)
