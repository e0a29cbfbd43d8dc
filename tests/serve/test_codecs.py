"""Request decoding and response encoding, without a model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfrec.serve import codecs
from mfrec.serve.codecs import Record, decode, decoder_for, negotiate
from mfrec.serve.csvrows import csv_rows
from mfrec.serve.requests import Recommendation, Request

SEED = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}'


def user(user_id: str, top_n: int | None = None, exclude_seen: bool | None = None) -> Request:
    return Request("user", user_id, top_n=top_n, exclude_seen=exclude_seen)


def requests(records: list[Record]) -> list[Request | None]:
    return [record.request for record in records]


def test_the_seed_record_with_string_or_number_values():
    for body in (b'{"user_id": "685", "top_n": "5"}', b'{"user_id": 685, "top_n": 5.0}'):
        (record,) = codecs.decode_json(body)
        assert record.request == Request(type="user", user_id="685", top_n=5)
        assert record.subject == "685" and record.error is None


def test_json_lines_in_a_json_body_keep_order_and_skip_blank_lines():
    body = b'\n{"user_id": "685", "top_n": "5"}\r\n\n  \n{"user_id": "302", "top_n": "5"}\n'
    for decoder in (codecs.decode_json, codecs.decode_jsonlines):
        assert requests(decoder(body)) == [user("685", 5), user("302", 5)]
    assert requests(codecs.decode_json(SEED)) == requests(codecs.decode_jsonlines(SEED))


def test_array_instances_and_personalize_input():
    array = b'[{"user_id": "a"}, {"userId": "b", "numResults": 3}]'
    instances = b'{"instances": [{"user_id": "a"}, {"userId": "b", "numResults": "3"}]}'
    want = [user("a"), user("b", 3)]
    assert requests(codecs.decode_json(array)) == want
    assert requests(codecs.decode_json(instances)) == want
    assert codecs.decode_json(instances)[1].raw == {"userId": "b", "numResults": "3"}


def test_optional_fields_type_and_exclude_seen():
    body = b'{"user_id": "a", "exclude_seen": "False", "top_n": null}\n{"top_n": 2}'
    known, popular = requests(codecs.decode_jsonlines(body))
    assert known == user("a", None, False)
    assert popular == Request("popular", top_n=2)
    explicit = codecs.decode_json(b'{"type": "user", "user_id": "a", "exclude_seen": 1}')
    assert requests(explicit) == [user("a", None, True)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"user_id": "a", "top_n": "five"}', "top_n must be an integer, got 'five'"),
        ('{"user_id": "a", "top_n": true}', "top_n must be an integer, got True"),
        ('{"user_id": "a", "top_n": 2.5}', "top_n must be an integer, got 2.5"),
        ('{"user_id": 1.5}', "user_id must be a non-empty string or an integer, got 1.5"),
        ('{"user_id": ""}', "user_id must be a non-empty string"),
        ('{"user_id": "a", "exclude_seen": "maybe"}', "exclude_seen must be true or false"),
        ('{"userid": "a"}', "unknown field 'userid'; use type, user_id, userId"),
        ('{"user_id": "a", "userId": "b"}', "field 'user_id' is given twice"),
        ('["a", 5]', "must be a JSON object like"),
        ('{"user_id": "a"', "is not valid JSON"),
    ],
)
def test_a_bad_record_becomes_an_error_record_in_place(line, message):
    body = b'{"user_id": "x"}\n' + line.encode() + b'\n{"user_id": "y"}'
    first, bad, last = codecs.decode_json(body)
    assert first.request == user("x") and last.request == user("y")
    assert bad.request is None and message in bad.error


def test_error_records_keep_the_user_id_and_raw_text_for_the_answer():
    (bad,) = codecs.decode_jsonlines(b'{"user_id": "685", "top_n": "x"}')
    assert bad.subject == "685" and bad.raw == {"user_id": "685", "top_n": "x"}
    (broken,) = codecs.decode_jsonlines(b'{"user_id": "685"')
    assert broken.subject == "" and broken.raw == '{"user_id": "685"'
    (binary,) = codecs.decode_jsonlines(b'{"user_id": "\xff"}')
    assert binary.error == "the record is not UTF-8 text"


def test_utf8_bom_is_ignored():
    assert requests(codecs.decode_json(b'\xef\xbb\xbf{"user_id": "a"}')) == [user("a")]
    assert requests(codecs.decode_csv(b"\xef\xbb\xbfa,2")) == [user("a", 2)]


def test_csv_lines_header_quotes_and_errors():
    body = b'user_id,top_n\n685,5\n\n"user,1",2\n302\n1,2,3\n,4'
    ok1, ok2, ok3, too_many, empty = codecs.decode_csv(body)
    assert requests([ok1, ok2, ok3]) == [
        user("685", 5),
        user("user,1", 2),
        user("302"),
    ]
    assert too_many.error == "the record has 3 fields; send user_id[,top_n]"
    assert empty.error.startswith("user_id must be a non-empty string")


def test_sniffing_without_a_content_type():
    for content_type in (None, "", "application/octet-stream"):
        assert requests(decoder_for(content_type)(SEED))[0] == user("685", 5)
        assert requests(decoder_for(content_type)(b"685,5"))[0] == user("685", 5)


def test_content_type_aliases_and_parameters():
    assert decoder_for("application/json; charset=utf-8") is codecs.decode_json
    assert decoder_for("application/x-jsonlines") is codecs.decode_jsonlines
    assert decoder_for("Application/CSV") is codecs.decode_csv


def test_unsupported_content_type_is_415():
    with pytest.raises(codecs.UnsupportedMediaType, match="Content-Type 'image/png' is not"):
        decoder_for("image/png")
    assert codecs.UnsupportedMediaType.status == 415


def test_strict_decoding_rejects_bodies_without_a_readable_record():
    with pytest.raises(codecs.BadRequest, match="the body holds no records; send for example"):
        decode(b" \n\n", "application/json", strict=True)
    with pytest.raises(codecs.BadRequest, match="the record is not valid JSON"):
        decode(b"{nope", "application/json", strict=True)
    with pytest.raises(codecs.BadRequest, match='"instances" must be an array'):
        decode(b'{"instances": 5}', "application/json", strict=False)
    assert decode(b" \n", "application/json", strict=False) == []
    (record,) = decode(b"{nope", "application/json", strict=False)
    assert record.error.startswith("the record is not valid JSON")


@pytest.mark.parametrize(
    ("accept", "want"),
    [
        (None, ("text/csv", "mfrec")),
        ("", ("text/csv", "mfrec")),
        ("*/*", ("text/csv", "mfrec")),
        ("text/csv", ("text/csv", "mfrec")),
        ("text/*", ("text/csv", "mfrec")),
        ("application/json", ("application/json", "mfrec")),
        ("application/*", ("application/json", "mfrec")),
        ("application/jsonlines; format=personalize", ("application/jsonlines", "personalize")),
        ("application/x-jsonlines", ("application/jsonlines", "mfrec")),
        ("application/json;q=0.5, text/csv", ("text/csv", "mfrec")),
        ("image/png, application/json;q=0.1", ("application/json", "mfrec")),
    ],
)
def test_accept_negotiation(accept, want):
    assert negotiate(accept) == want


@pytest.mark.parametrize("accept", ["application/xml", "text/csv;q=0", "application/json;format=x"])
def test_unsupported_accept_is_406(accept):
    with pytest.raises(codecs.NotAcceptable, match="is not supported; use one of text/csv"):
        negotiate(accept)


def answers() -> codecs.Answers:
    def rec(ids, scores, note=None):
        return Recommendation(np.array(ids, dtype=object), np.array(scores, dtype=float), note)

    return [
        (
            Record({"user_id": "685"}, user("685"), None, "685"),
            rec(["50", "181"], [4.5, 3.25]),
        ),
        (
            Record({"user_id": "x,y"}, user("x,y"), None, "x,y"),
            rec(
                ['a"b', "c"], [1.0, -0.5], note="user 'x,y' is not in the model: most popular items"
            ),
        ),
        (
            Record('{"user_id"', None, "the record is not valid JSON", ""),
            Recommendation.failed("the record is not valid JSON"),
        ),
        (Record({"user_id": "7"}, user("7"), None, "7"), rec([], [])),
    ]


def test_csv_rows_in_order_with_quoting_error_and_empty_rows_and_no_trailing_newline():
    assert codecs.encode_csv(answers()).decode() == (
        '685,50,4.500000\n685,181,3.250000\n"x,y","a""b",1.000000\n"x,y",c,-0.500000\n'
        ",,error: the record is not valid JSON\n7,,"
    )


def test_json_and_json_lines_objects():
    lines = codecs.encode_jsonlines(answers()).decode().split("\n")
    assert [json.loads(line) for line in lines] == [
        {"user_id": "685", "item_ids": ["50", "181"], "scores": [4.5, 3.25]},
        {
            "user_id": "x,y",
            "item_ids": ['a"b', "c"],
            "scores": [1.0, -0.5],
            "note": "user 'x,y' is not in the model: most popular items",
        },
        {"user_id": "", "error": "the record is not valid JSON"},
        {"user_id": "7", "item_ids": [], "scores": []},
    ]
    document = json.loads(codecs.encode_json(answers()))
    assert document["predictions"] == [json.loads(line) for line in lines]


def test_personalize_batch_output_shape():
    lines = codecs.encode_jsonlines(answers(), "personalize").decode().split("\n")
    first, _, failed, _ = [json.loads(line) for line in lines]
    assert first == {
        "input": {"user_id": "685"},
        "output": {"recommendedItems": ["50", "181"], "scores": [4.5, 3.25]},
        "error": None,
    }
    assert failed == {
        "input": '{"user_id"',
        "output": None,
        "error": "the record is not valid JSON",
    }


def test_popular_requests_are_labelled_in_json():
    record = Record({"top_n": 1}, Request("popular", top_n=1), None, "")
    answer = Recommendation(np.array(["a"], dtype=object), np.array([3.0]))
    assert json.loads(codecs.encode_jsonlines([(record, answer)])) == {
        "type": "popular",
        "item_ids": ["a"],
        "scores": [3.0],
    }


def test_vectorised_rows_equal_row_by_row_formatting():
    rng = np.random.default_rng(5)
    scores = [
        np.round(rng.normal(scale=s, size=n), 6) + 0.0 for s, n in ((1, 3), (1e4, 5), (1e-4, 4))
    ]
    scores[0][:2] = [0.0, -0.5]
    ids = [np.array([f"i{k}" for k in range(len(s))], dtype=object) for s in scores]
    want = "\n".join(
        f"{u},{i},{x:.6f}"
        for u, row_ids, row in zip(["a", "b", "c"], ids, scores, strict=True)
        for i, x in zip(row_ids, row.tolist(), strict=True)
    )
    assert csv_rows(["a", "b", "c"], ids, scores).decode() == want
    unicode = csv_rows(["ü"], [np.array(["é"], dtype=object)], [np.array([1.5])])
    assert unicode.decode() == "ü,é,1.500000"
    quoted = [np.array(["a,b"], dtype=object)]
    assert csv_rows(["x"], quoted, [np.array([1.0])]) is None
    assert csv_rows(["x"], [np.array(["a"], dtype=object)], [np.array([np.nan])]) is None
    assert csv_rows(["x"], [np.array(["a"], dtype=object)], [np.array([1e13])]) is None


def test_a_run_that_needs_quoting_falls_back_to_row_by_row():
    record = Record({}, user("q"), None, "q,1")
    answer = Recommendation(np.array(["a"], dtype=object), np.array([2.0]))
    assert (
        codecs.encode_csv([(record, answer)] * 2).decode() == '"q,1",a,2.000000\n"q,1",a,2.000000'
    )
