"""Request bodies to :class:`Request` records and recommendations back to bytes.

Decoders and encoders are ``{mime type: function}`` maps (:data:`DECODERS`, :data:`ENCODERS`),
chosen from the ``Content-Type`` and ``Accept`` headers by :func:`decoder_for` and
:func:`negotiate`. The decoders are here; the encoders are in :mod:`mfrec.serve.encoders`.

A body holds one or many records, in any of these shapes:

- ``application/json``: one object ``{"user_id": "685", "top_n": "5"}`` (the seed's), an array
  of objects, ``{"instances": [...]}``, or one object per line (SageMaker's MultiRecord batches
  keep the job's ContentType, so a JSON body may be JSON Lines);
- ``application/jsonlines``: one object per line;
- ``text/csv``: ``user_id[,top_n]`` per line, an optional ``user_id,...`` header line skipped.

Blank lines are skipped; records keep their order. The fields of a record are described in
:mod:`mfrec.serve.requests`; values may be strings or numbers.
A record that cannot be read becomes an error record (answered with an error row, so one bad
line never fails a batch file); only a body that cannot be read at all raises :class:`BadRequest`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass

from mfrec.serve.encoders import encode_csv, encode_json, encode_jsonlines
from mfrec.serve.requests import (
    MAX_ID_LENGTH,
    Recommendation,
    RecordError,
    Request,
    request_from_fields,
    shown,
)
from mfrec.train.errors import MfrecError

EXAMPLE = '{"user_id": "685", "top_n": "5"}'
SUBJECT_FIELDS = ("user_id", "userId", "item_id", "itemId")
MAX_DEPTH = 4  # a record is an object of ids, lists of ids and attribute objects: 3 levels
MAX_INT_DIGITS = 30  # longer JSON integers are never valid ids or counts (and Python refuses
# to convert more than 4,300 digits); they are read as a HugeNumber, refused by the field


class HttpError(MfrecError):
    """An error the client caused, answered with :attr:`status` and a one-line message."""

    status = 400


class BadRequest(HttpError):
    status = 400


class PayloadTooLarge(HttpError):
    status = 413


class UnsupportedMediaType(HttpError):
    status = 415


class NotAcceptable(HttpError):
    status = 406


@dataclass(frozen=True)
class Record:
    """One record of a body: the request, or the error that prevented reading it.

    ``raw`` is the record as received (a dict, or the text of a line that is not JSON), echoed
    by Personalize-style output; ``subject`` is what the answer is about (the user id, or the
    item id of a similar-items request) when it could be read: the first CSV column.
    """

    raw: object
    request: Request | None
    error: str | None = None
    subject: str = ""


class HugeNumber:
    """A JSON integer of more than :data:`MAX_INT_DIGITS` digits, kept as its digit count only."""

    def __init__(self, digits: str) -> None:
        self.length = len(digits)

    def __repr__(self) -> str:
        return f"an integer of {self.length} digits"

    __str__ = __repr__


def _parse_int(digits: str):
    return int(digits) if len(digits) <= MAX_INT_DIGITS else HugeNumber(digits)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def _loads(text: str | bytes):
    """``json.loads`` that never lets a huge integer reach ``int()``; a nesting too deep for the
    parser's recursion raises ``RecursionError`` like any other unreadable record."""
    return _DECODER.decode(text if isinstance(text, str) else text.decode("utf-8"))


def _unreadable(value) -> str | None:
    """Why a decoded value cannot be a record whatever its fields, or None: it nests deeper
    than :data:`MAX_DEPTH`, or a key or string holds a lone UTF-16 surrogate (JSON's
    ``"\\ud800"``), which no answer could write back out. Walked level by level, without
    recursion."""
    level = [value]
    for depth in range(MAX_DEPTH + 1):
        children = []
        for node in level:
            if isinstance(node, dict):
                children += node
                children += node.values()
            elif isinstance(node, list):
                children += node
            elif isinstance(node, str) and not node.isascii() and _has_surrogate(node):
                return (
                    f"the record holds a lone UTF-16 surrogate ({shown(node)}); send valid Unicode"
                )
        if not children:
            return None
        if depth == MAX_DEPTH and any(isinstance(c, dict | list) for c in children):
            return (
                f"the record nests more than {MAX_DEPTH} levels deep; send objects like {EXAMPLE}"
            )
        level = children
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _subject(value) -> str:
    """An unreadable record's subject, safe to write back: bounded and UTF-8-encodable."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() <= 800:
        value = str(value)
    if not isinstance(value, str):
        return ""
    return value[:MAX_ID_LENGTH].encode("utf-8", "replace").decode("utf-8")


def _plain(text: str) -> bool:
    """Whether a JSON line is surely readable as far as :func:`_unreadable` goes: no escape
    that could be a surrogate, too few brackets to nest too deeply (most records: skips the
    walk)."""
    return "\\u" not in text and text.count("{") + text.count("[") <= MAX_DEPTH


def record_from_object(obj, text: str | None = None) -> Record:
    """A :class:`Record` from one decoded JSON value (or CSV row as a dict); ``text``, the JSON
    it was decoded from when known, saves a check (:func:`_plain`).

    Error messages carry no line number: the error answer takes the record's place, and a line
    number within one of many request bodies would not point into the input file anyway.
    """
    plain = text is not None and _plain(text)
    if not plain and (error := _unreadable(obj)) is not None:
        return Record(None, None, error)
    if not isinstance(obj, dict):
        return Record(obj, None, f"a record must be a JSON object like {EXAMPLE}, got {shown(obj)}")
    try:
        request = request_from_fields(obj)
    except RecordError as exc:
        subject = next((obj[k] for k in SUBJECT_FIELDS if k in obj), "")
        return Record(obj, None, str(exc), _subject(subject))
    return Record(obj, request, None, request.subject)


def _lines(body: bytes):
    """The non-blank lines of a body as text; None for a line that is not UTF-8."""
    for number, line in enumerate(body.split(b"\n")):
        line = line.strip()
        if line:
            try:
                yield line.decode("utf-8-sig" if number == 0 else "utf-8")
            except UnicodeDecodeError:
                yield None


_NOT_UTF8 = "the record is not UTF-8 text"
_TOO_DEEP = f"the record nests too deeply to read; send objects like {EXAMPLE}"


def decode_jsonlines(body: bytes) -> list[Record]:
    """One JSON object per line."""
    records = []
    for text in _lines(body):
        if text is None:
            records.append(Record(None, None, _NOT_UTF8))
            continue
        try:
            value = _loads(text)
        except json.JSONDecodeError as exc:
            reason = f"{exc.msg} at column {exc.colno}"
            error = f"the record is not valid JSON ({reason}); send one object per line like"
            records.append(Record(text, None, f"{error} {EXAMPLE}"))
            continue
        except RecursionError:
            records.append(Record(text, None, _TOO_DEEP))
            continue
        records.append(record_from_object(value, text))
    return records


def decode_json(body: bytes) -> list[Record]:
    """One JSON document (object, array, ``{"instances": [...]}``) or else JSON Lines."""
    try:
        document = _loads(body.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return decode_jsonlines(body)  # MultiRecord batches and JSON Lines sent as JSON
    if isinstance(document, dict) and set(document) == {"instances"}:
        document = document["instances"]
        if not isinstance(document, list):
            raise BadRequest('"instances" must be an array of records')
    if isinstance(document, list):
        return [record_from_object(value) for value in document]
    return [record_from_object(document)]


def decode_csv(body: bytes) -> list[Record]:
    """``user_id[,top_n]`` per line; a first line starting with ``user_id`` is a header."""
    records = []
    for number, text in enumerate(_lines(body)):
        try:
            row = next(csv.reader([text])) if text is not None else None
        except csv.Error as exc:  # a field over csv's 131,072 characters, a NUL byte, ...
            error = f"the record is not CSV that can be read ({exc}); send user_id[,top_n]"
            records.append(Record(text, None, error))
            continue
        if row is None:
            records.append(Record(None, None, _NOT_UTF8))
        elif number == 0 and row[0].strip() in ("user_id", "userId"):
            continue
        elif len(row) > 2:
            error = f"the record has {len(row)} fields; send user_id[,top_n]"
            records.append(Record(text, None, error))
        else:
            obj = {"user_id": row[0].strip()}
            if len(row) == 2 and row[1].strip():
                obj["top_n"] = row[1]
            records.append(record_from_object(obj))
    return records


def _sniff(body: bytes) -> list[Record]:
    """No usable Content-Type: JSON when the body starts like JSON, else CSV."""
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return decode_json(body) if start in (b"{", b"[") else decode_csv(body)


DECODERS: dict[str, Callable[[bytes], list[Record]]] = {
    "application/json": decode_json,
    "application/jsonlines": decode_jsonlines,
    "text/csv": decode_csv,
}
_CONTENT_ALIASES = {
    "application/x-jsonlines": "application/jsonlines",
    "application/jsonl": "application/jsonlines",
    "application/x-ndjson": "application/jsonlines",
    "application/csv": "text/csv",
}


def decoder_for(content_type: str | None) -> Callable[[bytes], list[Record]]:
    """The decoder for a ``Content-Type`` header; none or octet-stream sniffs the body."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in ("", "application/octet-stream"):
        return _sniff
    decoder = DECODERS.get(_CONTENT_ALIASES.get(mime, mime))
    if decoder is None:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; use one of {', '.join(DECODERS)}"
        )
    return decoder


def decode(body: bytes, content_type: str | None, *, strict: bool) -> list[Record]:
    """The records of a body. ``strict`` (real-time endpoints): a body without one readable
    record raises :class:`BadRequest`; otherwise (batch) every record is answered."""
    records = decoder_for(content_type)(body)
    if strict and not records:
        raise BadRequest(f"the body holds no records; send for example {EXAMPLE}")
    if strict and all(record.error for record in records):
        raise BadRequest(records[0].error)
    return records


# ---------------------------------------------------------------------------------------------
# Responses (:mod:`mfrec.serve.encoders`). ``answers`` pairs every record with its
# Recommendation, in body order.

Answers = list[tuple[Record, Recommendation]]

ENCODERS: dict[str, Callable[[Answers, str], bytes]] = {
    "text/csv": encode_csv,
    "application/json": encode_json,
    "application/jsonlines": encode_jsonlines,
}
STYLES = ("mfrec", "personalize")
_WILDCARDS = {"*/*": "text/csv", "text/*": "text/csv", "application/*": "application/json"}


def negotiate(accept: str | None) -> tuple[str, str]:
    """(mime type, style) for an ``Accept`` header; missing or ``*/*`` gives CSV.

    ``style`` comes from a ``format`` parameter: ``application/jsonlines; format=personalize``
    answers in Amazon Personalize's batch output shape.
    """
    ranges = []
    for order, part in enumerate((accept or "*/*").split(",")):
        mime, *params = [piece.strip() for piece in part.split(";")]
        options = dict(p.split("=", 1) for p in params if "=" in p)
        try:
            quality = float(options.pop("q", 1))
        except ValueError:
            quality = 0.0
        ranges.append((-quality, order, mime.lower(), options.get("format", "mfrec")))
    for negative_quality, _, mime, style in sorted(ranges):
        mime = _WILDCARDS.get(mime, _CONTENT_ALIASES.get(mime, mime))
        if negative_quality < 0 and mime in ENCODERS and style in STYLES:
            return mime, style
    raise NotAcceptable(
        f"Accept {accept!r} is not supported; use one of {', '.join(ENCODERS)} (JSON types "
        "take ';format=personalize' for Amazon Personalize's output shape)"
    )
