"""Named filters of a deployment (MFREC_FILTERS): lookup by name, by full ARN and by an ARN's
last segment, and every problem with the file or the name as a one-line error."""

from __future__ import annotations

import json

import pytest

from mfrec.serve.filters import NamedFilterError, NamedFilters, deployment_filters, request_filter
from mfrec.serve.filters.named import short_name

ARN = "arn:aws:personalize:us-east-1:123456789012:filter/"
COMEDIES = 'INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")'
CHEAP = "INCLUDE ItemID WHERE Items.PRICE < $MAX"


@pytest.fixture
def named(tmp_path):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps({"comedies": COMEDIES, ARN + "cheap": CHEAP}))
    return NamedFilters.from_file(str(path))


def test_short_name_is_the_text_after_filter_slash():
    assert short_name(ARN + "comedies") == "comedies"
    assert short_name("comedies") == "comedies"
    assert short_name("arn:aws:personalize:x:1:filter/") == "arn:aws:personalize:x:1:filter/"


def test_a_filter_is_found_by_name_full_arn_or_the_arns_last_segment(named):
    assert named.get("comedies").text == COMEDIES
    assert named.get(ARN + "comedies").text == COMEDIES  # an ARN matches a name key
    assert named.get(ARN + "cheap").text == CHEAP
    assert named.get("cheap").text == CHEAP  # a name matches an ARN key
    bound = request_filter(arn=ARN + "cheap", values={"MAX": "10"}, named=named)
    assert bound.text == CHEAP and bound.includes[0].value.number == 10.0


def test_an_unknown_filter_arn_names_the_known_ones(named):
    with pytest.raises(
        NamedFilterError,
        match="'dramas' is not a filter of this deployment.*"
        "names: cheap, comedies\\); add it there or send filterExpression",
    ):
        named.get("dramas")


def test_deployment_filters_read_mfrec_filters(tmp_path):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"comedies": COMEDIES}))
    assert deployment_filters({"MFREC_FILTERS": str(path)}).get("comedies").text == COMEDIES
    with pytest.raises(NamedFilterError, match="filterArn needs the deployment's named filters"):
        deployment_filters({})
    with pytest.raises(NamedFilterError, match="MFREC_FILTERS=.*cannot be read"):
        deployment_filters({"MFREC_FILTERS": str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read"),
        ('["a"]', "must hold a JSON object"),
        ('{"bad": 3}', "filter 'bad' must be an expression string"),
        ('{"bad": "INCLUDE ItemID WHER"}', "filter 'bad': expected WHERE at column 16"),
        (
            '{"users": "INCLUDE ItemID WHERE Items.A < 3 IF CurrentUser.AGE > 3"}',
            "filter 'users': IF CurrentUser.AGE needs user metadata",
        ),
    ],
)
def test_a_bad_file_is_reported_with_the_filter_name(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(NamedFilterError, match=message):
        NamedFilters.from_file(str(path))
