"""The HTTP face of a :class:`Recommender`: SageMaker's ``/ping``, ``/invocations`` and
``/execution-parameters``, as a Flask application factory.

Deployment options come from environment variables: :class:`mfrec.serve.settings.ServingSettings`.

Errors: a body that cannot be read at all is a 400 with a one-line reason; a record that cannot
be read, or a user the model does not know with ``MFREC_UNKNOWN_USER=error``, is answered with an
error row and logged. With ``SAGEMAKER_BATCH=true`` even a body whose every record is bad gets
error rows instead of a 400, because SageMaker fails the whole input file after a non-2xx answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from mfrec.serve import codecs, personalize_api, web
from mfrec.serve.events import routes as events
from mfrec.serve.events import service as events_service
from mfrec.serve.recommender import Recommender
from mfrec.serve.requests import Recommendation
from mfrec.serve.settings import ServingSettings

logger = logging.getLogger(__name__)

# Answers to large bodies computed at the same time by one worker (the others wait): bounds
# memory, since each holds a decoded body and its response, while the server's many threads
# only wait for slow clients (mfrec.serve.server.THREADS_PER_WORKER). Bodies of at most
# SMALL_BODY bytes (real-time requests) skip it: the Recommender's micro-batcher answers them
# together, so that they must not queue here (mfrec.serve.batching).
CONCURRENT_ANSWERS = 4
SMALL_BODY = 4096


class ModelSlot:
    """The app's model: ``None`` until loaded (``/ping`` answers 503 until then)."""

    def __init__(self, recommender: Recommender | None = None) -> None:
        self.recommender = recommender

    def require(self) -> Recommender:
        if self.recommender is None:
            raise ModelNotLoaded("the model is not loaded yet; wait for /ping to answer 200")
        return self.recommender


class ModelNotLoaded(codecs.HttpError):
    status = 503


def within_budget(
    recommender: Recommender, records: list[codecs.Record], max_bytes: int
) -> list[codecs.Record]:
    """``records`` with those whose answers would take the response past ``max_bytes`` turned
    into error records (in body order, so the first ones are answered).

    The size of an answer is estimated before it is computed, from its number of rows and the
    longest subject and item id: ``rows * (len(subject) + longest item id + 16)`` bytes.
    """
    per_row = recommender.item_id_length + 16
    total, kept = 0, []
    for record in records:
        if record.error is None:
            rows = recommender.answer_rows(record.request)
            total += rows * (len(record.subject) + per_row)
            if not rows:  # refused before any work, so that a lone record is a 400
                error = (
                    f"top_n={record.request.top_n} is out of range; "
                    f"use 1 to {recommender.max_top_n}"
                )
                record = dataclasses.replace(record, request=None, error=error)
            elif total > max_bytes:
                error = (
                    f"the answers would make the response larger than MFREC_MAX_RESPONSE_MB="
                    f"{max_bytes // 2**20}; send fewer records per request (MaxPayloadInMB) "
                    "or a smaller top_n"
                )
                record = dataclasses.replace(record, request=None, error=error)
        kept.append(record)
    return kept


def answer_records(
    recommender: Recommender, records: list[codecs.Record], max_bytes: int | None = None
) -> codecs.Answers:
    """Every record paired with its answer; readable records are answered in one batch, as far
    as the response stays under ``max_bytes`` (:func:`within_budget`)."""
    if max_bytes is not None:
        records = within_budget(recommender, records, max_bytes)
    answers = iter(recommender.answer([r.request for r in records if r.error is None]))
    pairs = [(r, Recommendation.failed(r.error) if r.error else next(answers)) for r in records]
    failed = [a.error for _, a in pairs if a.error]
    noted = sum(1 for _, a in pairs if a.note)
    if failed:
        logger.warning(
            "%d of %d records answered with an error; first: %s", len(failed), len(pairs), failed[0]
        )
    if noted:
        logger.info(
            "%d of %d records answered with a note (e.g. a popularity fallback)", noted, len(pairs)
        )
    return pairs


class ServerTiming:
    """Durations of a request's steps, for the ``Server-Timing`` response header (W3C): a
    client sees how much of its wait was the model (``model;dur=`` in milliseconds)."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def __call__(self, name: str, function, *args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.durations[name] = time.perf_counter() - started

    def header(self) -> str:
        return ", ".join(f"{name};dur={1000 * s:.1f}" for name, s in self.durations.items())


DISCARD_LIMIT = 100 * 2**20  # SageMaker's largest MaxPayloadInMB


def _discard_body() -> None:
    """Read and drop an unread body of up to :data:`DISCARD_LIMIT` bytes, so that the client,
    still sending, gets the answer and the kept-alive connection holds no stray bytes
    (gunicorn drains only 64 kB itself, then closes a connection it announced as kept alive).
    A larger body is left: gunicorn closes the connection."""
    remaining = request.content_length or 0
    if remaining > DISCARD_LIMIT:
        return
    stream = request.environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, 2**20))
        if not chunk:
            return
        remaining -= len(chunk)


def _one_line(text: str, status: int) -> Response:
    """A plain-text answer of one line: at most 1,000 characters, ASCII-safe (an error may
    quote a client's bytes, lone surrogates included)."""
    line = " ".join(str(text).split())
    line = line if len(line) <= 1000 else line[:997] + "..."
    return Response(line.encode("utf-8", "backslashreplace"), status=status, mimetype="text/plain")


def create_app(
    recommender: Recommender | None = None,
    model_dir: str | os.PathLike | None = None,
    settings: ServingSettings | None = None,
) -> Flask:
    """The Flask app serving ``recommender`` (or the model in ``model_dir``, loaded now).

    With neither, the app starts without a model: ``/ping`` answers 503 until
    ``app.extensions["mfrec"].recommender`` is set.
    """
    settings = settings or ServingSettings.from_env()
    if recommender is None and model_dir is not None:
        options = settings.recommender_options()
        recommender = Recommender.from_dir(model_dir, settings.device, **options)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_mb * 1024 * 1024
    slot = app.extensions["mfrec"] = ModelSlot(recommender)
    answering = threading.BoundedSemaphore(CONCURRENT_ANSWERS)
    app.extensions["mfrec.settings"] = settings

    @app.get("/ping")
    def ping():
        return (
            _one_line("", 200)
            if slot.recommender is not None
            else _one_line("model not loaded", 503)
        )

    @app.get("/execution-parameters")
    def execution_parameters():
        return jsonify(settings.execution_parameters())

    @app.post("/invocations")
    def invocations():
        # The body is read before anything can be refused: a connection whose answer says
        # keep-alive must hold no unread bytes when the next request comes.
        body, content_type = request.get_data(cache=False), request.headers.get("Content-Type")
        recommender = slot.require()
        mime, style = codecs.negotiate(request.headers.get("Accept"))
        timer = ServerTiming()
        with answering if len(body) > SMALL_BODY else contextlib.nullcontext():
            records = timer("decode", codecs.decode, body, content_type, strict=not settings.batch)
            records = events_service.with_events(records)  # stored events applied
            budget = settings.max_response_mb * 2**20
            answers = timer("model", answer_records, recommender, records, budget)
            if not settings.batch and all(record.error for record, _ in answers):
                raise codecs.BadRequest(answers[0][0].error)  # as codecs.decode(strict=True)
            encoded = timer("encode", codecs.ENCODERS[mime], answers, style)
        return Response(encoded, mimetype=mime, headers={"Server-Timing": timer.header()})

    app.register_blueprint(web.blueprint)  # GET / and its read-only JSON routes
    app.register_blueprint(personalize_api.blueprint)  # Personalize's runtime REST paths
    events.install(app, model_dir)  # Personalize's events API (MFREC_EVENTS_DB)

    @app.errorhandler(codecs.HttpError)
    def client_error(exc: codecs.HttpError):
        return _one_line(str(exc), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            _discard_body()
            return _one_line(
                f"the body is larger than MaxPayloadInMB ({settings.max_payload_mb} "
                "MB); send fewer records per request or raise "
                "SAGEMAKER_MAX_PAYLOAD_IN_MB (at most 100)",
                413,
            )
        return _one_line(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):  # the process boundary: log it, never send it
        logger.exception("internal error while answering %s %s", request.method, request.path)
        return _one_line("internal error; see the server log", 500)

    return app
