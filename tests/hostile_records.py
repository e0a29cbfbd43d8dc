"""Hostile and malformed request records, one per class of defect (issue 17), shared by the
hostile-request tests and the batch-transform tests (not a test module).

Each entry is ``name: (one JSON line as bytes, a phrase its error row must contain)``. Every one
must be answered with an error row inside a batch, and with a 4xx when it is a whole body.
"""

from __future__ import annotations

import json
import random

GOOD = b'{"user_id": "685", "top_n": 3}'


def _record(**fields) -> bytes:
    return json.dumps(fields).encode()


JSON_RECORDS: dict[str, tuple[bytes, str]] = {
    "nested 1000 deep": (b"[" * 1000 + b"]" * 1000, "nests too deeply"),
    "nested 100000 deep, unclosed": (b"[" * 100_000, "nests too deeply"),
    "nested in a field": (b'{"user_id": ' + b"[" * 50 + b"]" * 50 + b"}", "nests more than"),
    "top_n of 5000 digits": (b'{"user_id": "685", "top_n": ' + b"9" * 5000 + b"}", "5000 digits"),
    "user_id of 5000 digits": (b'{"user_id": ' + b"7" * 5000 + b"}", "5000 digits"),
    "top_n of 4000 digits": (b'{"top_n": ' + b"9" * 4000 + b"}", "4000 digits"),
    "top_n string of 5000 digits": (_record(top_n="9" * 5000), "top_n must be an integer"),
    "top_n 1e400": (b'{"user_id": "685", "top_n": 1e400}', "top_n must be an integer"),
    "top_n NaN": (b'{"user_id": "685", "top_n": NaN}', "top_n must be an integer"),
    "top_n 1e300": (b'{"user_id": "685", "top_n": 1e300}', "top_n must be an integer"),
    "top_n 2**62": (_record(user_id="685", top_n=2**62), "out of range"),
    "top_n negative": (_record(user_id="685", top_n=-1), "out of range"),
    "top_n true": (_record(user_id="685", top_n=True), "top_n must be an integer"),
    "lone surrogate user_id": (b'{"user_id": "\\ud800"}', "lone UTF-16 surrogate"),
    "lone surrogate item": (b'{"item_id": "a\\udfff"}', "lone UTF-16 surrogate"),
    "lone surrogate in a list": (b'{"item_ids": ["1", "\\ud800"]}', "lone UTF-16 surrogate"),
    "lone surrogate field name": (b'{"\\ud800": 1}', "lone UTF-16 surrogate"),
    "NUL in an id": (b'{"user_id": "a\\u0000b"}', "NUL character"),
    "id of 300000 characters": (_record(user_id="u" * 300_000, top_n=500), "at most 256"),
    "item_ids of 5000": (_record(user_id="685", item_ids=["1"] * 5000), "at most 1000"),
    "history of 5000": (_record(user_id="n", history=["i1"] * 5000), "at most 1000"),
    "exclude_items of 5000": (_record(exclude_items=["i1"] * 5000), "at most 1000"),
    "attribute values of 500": (
        _record(include_attributes={"genre": ["x"] * 500}),
        "more than 100 values",
    ),
    "not JSON": (b"{oops", "not valid JSON"),
    "not UTF-8": (b'{"user_id": "\xff\xfe"}', "not UTF-8"),
    "a JSON string": (b'"685"', "must be a JSON object"),
    "a JSON number": (b"685", "must be a JSON object"),
    "null": (b"null", "must be a JSON object"),
    "unknown field": (_record(user="685"), "unknown field"),
    "field twice": (_record(user_id="685", userId="302"), "given twice"),
    "user_id a list": (_record(user_id=["685"]), "user_id must be a non-empty string"),
    "user_id empty": (_record(user_id=""), "user_id must be a non-empty string"),
    "user_id a float": (_record(user_id=1.5), "user_id must be a non-empty string"),
    "type unknown": (_record(type="x" * 10_000), "type must be one of"),
    "similarity unknown": (_record(item_id="i1", similarity=[1]), "similarity must be one of"),
    "exclude_seen 2": (_record(user_id="685", exclude_seen="maybe"), "must be true or false"),
    "huge field name": (b'{"' + b"k" * 100_000 + b'": 1}', "unknown field"),
}

CSV_RECORDS: dict[str, tuple[bytes, str]] = {
    "CSV field over 131072 characters": (b"u" * 140_000 + b",5", "field larger than field limit"),
    "CSV id over 256 characters": (b"u" * 1000 + b",5", "at most 256"),
    "CSV three fields": (b"685,5,x", "has 3 fields"),
    "CSV top_n of 5000 digits": (b"685," + b"9" * 5000, "top_n must be an integer"),
    "CSV not UTF-8": (b"\xff\xfe685", "not UTF-8"),
}


def mutations(seed: int, count: int, base: list[bytes]) -> list[bytes]:
    """``count`` seeded random mutations of valid JSON records: bytes flipped, inserted,
    deleted or repeated, a slice doubled, or a hostile fragment spliced in."""
    rng = random.Random(seed)
    fragments = [b"[" * 1200, b"9" * 4400, b"\\ud800", b"\\u0000", b"\xff", b"\x00", b'"' * 3]
    fragments += [b"NaN", b"-Infinity", b"1e999", b"{" * 20, b",", b"\r", b'":', b"\\"]
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            kind = rng.randrange(5)
            if kind == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif kind == 1:
                data[at:at] = bytes([rng.randrange(256)])
            elif kind == 2:
                del data[at : at + rng.randint(1, 5)]
            elif kind == 3:
                data[at:at] = rng.choice(fragments)
            else:
                data[at:at] = bytes(data[at : at + rng.randint(1, 8)]) * rng.randint(2, 300)
        out.append(bytes(data).replace(b"\n", b" "))
    return out
