"""Personalize's filter expression language (mfrec.serve.filters) on a small catalogue: a table of
expressions and the item sets they leave, placeholders and Personalize's quoting, multi-valued
fields, numeric comparisons, chained ``|`` expressions, and every error as one line."""

from __future__ import annotations

import numpy as np
import pytest

from mfrec.serve import filters
from mfrec.serve.catalog import Catalog, FilterError
from mfrec.serve.filters import (
    FilterEvaluationError,
    FilterNotSupported,
    FilterSyntaxError,
    FilterValueError,
    request_filter,
)
from mfrec.serve.requests import Filters
from mfrec.train.artifact import ATTRIBUTE_PREFIX, ModelArtifact

ALL = set(range(8))
GENRE = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]
PRICE = ["5", "10", "15", "20", "", "7.5", "abc", "10"]
TAG = ["", "", "", "", "", "", "", 'say "hi", ok']
SEEN = {"u0": [1, 2], "u1": []}  # training items of each user


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    extra = {
        ATTRIBUTE_PREFIX + "GENRE": np.array(GENRE),
        ATTRIBUTE_PREFIX + "price": np.array(PRICE),
    }
    extra[ATTRIBUTE_PREFIX + "tag"] = np.array(TAG)
    return Catalog(
        ModelArtifact(
            np.ones((2, 2), np.float32),
            np.ones((8, 2), np.float32),
            np.zeros(2, np.float32),
            np.zeros(8, np.float32),
            np.array(list(SEEN)),
            np.array([f"i{k}" for k in range(8)]),
            np.ones(8, np.float32),
            np.array([0, 2, 2]),
            np.array([1, 2]),
            extra=extra,
        )
    )


def returned(catalog, text, values=None, user_id=None, item_id=None) -> set[int]:
    """The item indices a filter lets through: allowed (every item if None) minus banned."""
    bound = request_filter(text, values=values, user_id=user_id, item_id=item_id)
    banned, allowed = catalog.masks(Filters(expression=bound))
    return (ALL if allowed is None else set(allowed.tolist())) - set(banned.tolist())


def where(condition: str, action: str = "INCLUDE") -> str:
    return f"{action} ItemID WHERE {condition}"


EXPRESSIONS = [
    # memberships; GENRE is multi-valued ("Comedy|Drama" is both)
    (where('Items.GENRE IN ("Comedy")'), {0, 1, 4}),
    (where('Items.GENRE IN ("Comedy", "Drama")', "EXCLUDE"), {3, 6, 7}),
    (where('Items.GENRE NOT IN ("Comedy")'), {2, 3, 5, 6, 7}),
    ('include itemid where items.genre in ("Drama")', {1, 2, 5}),  # keywords in any case
    (where('Items.Genre IN ("Horror")'), {3, 6}),  # field matched ignoring case
    (where('Items.GENRE IN ("comedy")'), set()),  # values are exact strings
    (where('Items.tag IN ("say \\"hi\\", ok")'), {7}),  # escaped quote and comma in a value
    (where('Items.ITEM_ID IN ("i0", "i7", "unknown")', "EXCLUDE"), ALL - {0, 7}),
    (where('Items.price IN (10, "7.5")'), {1, 5, 7}),  # numbers in a list match as written
    # numeric comparisons: "" and "abc" are no number and never match, not even !=
    (where("Items.price < 10"), {0, 5}),
    (where("Items.price <= 10"), {0, 1, 5, 7}),
    (where("Items.price = 10"), {1, 7}),
    (where("Items.price != 10"), {0, 2, 3, 5}),
    (where("Items.price > 10"), {2, 3}),
    (where("Items.price >= 15.0"), {2, 3}),
    (where("Items.price > -1e9", "EXCLUDE"), {4, 6}),
    # AND binds tighter than OR
    (where('Items.GENRE IN ("Drama") AND Items.price > 8'), {1, 2}),
    (where('Items.GENRE IN ("Horror") OR Items.price < 6'), {0, 3, 6}),
    (
        where('Items.GENRE IN ("Horror") OR Items.GENRE IN ("Comedy") AND Items.price > 6'),
        {1, 3, 6},
    ),
    # chained expressions: (union of INCLUDEs) - (union of EXCLUDEs), in any order
    (where('Items.GENRE IN ("Horror")') + " | " + where("Items.price < 6"), {0, 3, 6}),
    (where('Items.GENRE IN ("Comedy")') + " | " + where("Items.price >= 10", "EXCLUDE"), {0, 4}),
    (where("Items.price >= 10", "EXCLUDE") + " | " + where('Items.GENRE IN ("Comedy")'), {0, 4}),
    (
        where("Items.price < 6", "EXCLUDE") + "|" + where('Items.GENRE IN ("Drama")', "EXCLUDE"),
        {3, 4, 6, 7},
    ),
]


@pytest.mark.parametrize(("text", "want"), EXPRESSIONS)
def test_expressions_leave_the_expected_items(catalog, text, want):
    assert returned(catalog, text) == want


def test_interactions_any_event_type_is_the_users_training_items(catalog):
    assert returned(catalog, where('Interactions.EVENT_TYPE IN ("*")'), user_id="u0") == {1, 2}
    assert returned(catalog, where("Interactions.EVENT_TYPE IN (*)", "EXCLUDE"), user_id="u0") == (
        ALL - {1, 2}
    )
    drama_unseen = (
        where('Items.GENRE IN ("Drama")')
        + " | "
        + where('Interactions.EVENT_TYPE IN ("*")', "EXCLUDE")
    )
    assert returned(catalog, drama_unseen, user_id="u0") == {5}
    assert returned(catalog, drama_unseen, user_id="u1") == {1, 2, 5}  # saw nothing
    assert returned(catalog, drama_unseen, user_id="stranger") == {1, 2, 5}
    assert returned(catalog, drama_unseen) == {1, 2, 5}  # no user


PLACEHOLDERS = [
    (where("Items.GENRE IN ($GENRE)"), {"GENRE": '"Comedy","Drama"'}, {0, 1, 2, 4, 5}),
    (where("Items.GENRE IN ($GENRE)"), {"GENRE": '"Horror"'}, {3, 6}),
    (where("Items.GENRE IN $GENRE"), {"GENRE": ' "Horror" , "Drama" '}, {1, 2, 3, 5, 6}),
    (where("Items.GENRE IN ($GENRE)"), {"GENRE": "Horror, Drama"}, {1, 2, 3, 5, 6}),  # unquoted
    (where("Items.GENRE IN ($GENRE)"), {"$GENRE": '"Horror"'}, {3, 6}),
    (where('Items.GENRE IN ("Horror", $MORE)'), {"MORE": '"Drama"'}, {1, 2, 3, 5, 6}),
    (where("Items.tag IN ($T)"), {"T": '"say \\"hi\\", ok"'}, {7}),
    (where("Items.price <= $MAX"), {"MAX": "10"}, {0, 1, 5, 7}),
    (where("Items.price <= $MAX"), {"MAX": '"10"'}, {0, 1, 5, 7}),
    (where("Items.price <= $MAX"), {"MAX": 10}, {0, 1, 5, 7}),  # a JSON number, leniently
    # an EXCLUDE part whose value is missing is dropped; nothing left excludes nothing
    (where("Items.GENRE IN ($GENRE)", "EXCLUDE"), {}, ALL),
    (where("Items.GENRE IN ($GENRE)", "EXCLUDE"), {"GENRE": ""}, ALL),
    (where("Items.GENRE IN ($GENRE) AND Items.price > 8", "EXCLUDE"), None, {0, 4, 5, 6}),
    (
        where('Items.GENRE IN ("Comedy")') + " | " + where("Items.GENRE IN ($G)", "EXCLUDE"),
        {},
        {0, 1, 4},
    ),
]


@pytest.mark.parametrize(("text", "values", "want"), PLACEHOLDERS)
def test_placeholders_take_personalize_quoted_filter_values(catalog, text, values, want):
    assert returned(catalog, text, values) == want


def test_event_type_placeholder_and_current_item(catalog):
    seen = where("Interactions.EVENT_TYPE IN ($EVENT_TYPE)", "EXCLUDE")
    assert returned(catalog, seen, {"EVENT_TYPE": '"*"'}, user_id="u0") == ALL - {1, 2}
    assert returned(catalog, seen, {}, user_id="u0") == ALL
    cheaper_same_genre = where(
        "Items.price < CurrentItem.price AND Items.GENRE IN CurrentItem.GENRE"
    )
    assert returned(catalog, cheaper_same_genre, item_id="i2") == {1, 5}  # Drama, under 15
    same_genre = where("Items.GENRE IN (CurrentItem.GENRE)")
    assert returned(catalog, same_genre, item_id="i1") == {0, 1, 2, 4, 5}  # Comedy|Drama
    assert returned(catalog, same_genre, item_id="unknown") == set()


def test_split_values_reads_personalize_quoting():
    assert filters.split_values('"Comedy","Drama"') == ("Comedy", "Drama")
    assert filters.split_values('"a,b", c ,"d\\"e"') == ("a,b", "c", 'd"e')
    assert filters.split_values("") == ()


def test_expressions_are_parsed_once():
    text = where('Items.GENRE IN ("Cached")')
    assert filters.compile_filter(text) is filters.compile_filter(text)
    assert filters.parse(text) is filters.parse(text)


SYNTAX_ERRORS = [
    ("", "the filter expression is empty"),
    ('INCLUDE ItemID WHER Items.GENRE IN ("a")', "expected WHERE at column 16, found 'WHER'"),
    (
        'INCLUDE ItemID WHERE Items.GENRE IN ("a"',
        r"expected ',' or '\)' at column 41, found the end",
    ),
    (
        "INCLUDE ItemID WHERE Items.GENRE IN ('a')",
        "column 38: \"'a'\\)\" \\(strings take double quotes\\)",
    ),
    (
        "INCLUDE ItemID WHERE Items.GENRE IN (Comedy)",
        "found 'Comedy' \\(quote strings: \"Comedy\"\\)",
    ),
    ('INCLUDE ItemID WHERE GENRE IN ("a")', "expected a field like Items.GENRE at column 22"),
    ('INCLUDE ItemID WHERE Products.GENRE IN ("a")', "unknown dataset 'Products' at column 22"),
    ('INCLUDE ItemID WHERE Items.GENRE = "Comedy"', "comparisons take numbers; match strings with"),
    ('INCLUDE ItemID WHERE Items.GENRE LIKE ("a")', "expected IN, NOT IN or a comparison"),
    ('INCLUDE ItemID WHERE Items.G IN ("a") AND Interactions.EVENT_TYPE IN ("*")', "cannot mix"),
    ("INCLUDE UserID WHERE Users.AGE > 3", "UserID filters .* are not supported"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") EXCLUDE', "expected AND, OR, IF, '\\|' or the end"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") |', "expected INCLUDE or EXCLUDE at column 44"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("*")', '"\\*" applies to Interactions.EVENT_TYPE only'),
    ("INCLUDE ItemID WHERE Interactions.EVENT_TYPE > 3", "takes IN or NOT IN, not >"),
    ('INCLUDE ItemID WHERE Interactions.TIMESTAMP IN ("*")', "use Interactions.EVENT_TYPE"),
    ("INCLUDE ItemID WHERE Items.price < Items.cost", "cannot be a value; use CurrentItem"),
    ('INCLUDE ItemID WHERE CurrentItem.GENRE IN ("a")', "go after WHERE only as a value"),
    ("INCLUDE ItemID WHERE Items.price < 3 IF Items.AGE > 3", "IF takes CurrentUser"),
    ("INCLUDE ItemID WHERE Items.price < 3 ~", "unexpected character at column 38: '~'"),
]


@pytest.mark.parametrize(("text", "message"), SYNTAX_ERRORS)
def test_syntax_errors_are_one_line_with_the_column(text, message):
    with pytest.raises(FilterSyntaxError, match=message) as caught:
        request_filter(text)
    assert "\n" not in str(caught.value)


def test_what_mfrec_models_do_not_keep_is_not_supported():
    with pytest.raises(FilterNotSupported, match="IF CurrentUser.AGE needs user metadata"):
        request_filter(where("Items.price < 20 IF CurrentUser.AGE > 18", "EXCLUDE"))
    with pytest.raises(FilterNotSupported, match="not supported by this model.*use IN"):
        request_filter(where('Interactions.EVENT_TYPE IN ("click", "stream")', "EXCLUDE"))
    with pytest.raises(FilterNotSupported, match='IN \\("click"\\) is not supported by this model'):
        request_filter(where("Interactions.EVENT_TYPE IN ($E)", "EXCLUDE"), values={"E": '"click"'})


VALUE_ERRORS = [
    (where("Items.GENRE IN ($GENRE)"), {}, "no value for \\$GENRE; an INCLUDE expression needs"),
    (where("Items.GENRE IN ($GENRE)"), {"GENRES": '"a"'}, "has GENRES, which the filter does"),
    (where("Items.price < $MAX"), {"MAX": '"cheap"'}, "MAX must be a number"),
    (where("Items.price < $MAX"), {"MAX": '"1", "2"'}, "MAX must be one number"),
    (where("Items.GENRE IN ($G)"), {"G": ["a"]}, "filterValues G must be a string"),
    (where("Items.GENRE IN ($G)"), '"a"', "filterValues must be an object"),
    (where("Items.GENRE IN CurrentItem.GENRE"), None, "related-items requests"),
]


@pytest.mark.parametrize(("text", "values", "message"), VALUE_ERRORS)
def test_filter_values_errors(text, values, message):
    with pytest.raises(FilterValueError, match=message):
        request_filter(text, values=values)


def test_request_filter_needs_exactly_one_filter():
    assert request_filter() is None
    with pytest.raises(FilterValueError, match="not both"):
        request_filter(where("Items.a IN (1)"), arn="comedies")
    with pytest.raises(FilterValueError, match="filterValues needs a filterArn"):
        request_filter(values={"A": "1"})
    with pytest.raises(FilterSyntaxError, match="filterExpression must be a string"):
        request_filter(expression=3)
    with pytest.raises(FilterSyntaxError, match="has 2501 characters; at most 2500"):
        request_filter(where("Items.a IN (1)").ljust(2501))
    with pytest.raises(FilterValueError, match="has 26 entries; at most 25"):
        request_filter(where("Items.a IN ($A)"), values={f"K{k}": "1" for k in range(26)})
    with pytest.raises(FilterValueError, match="values at most 1000"):
        request_filter(where("Items.a IN ($A)"), values={"A": "x" * 1001})


def test_an_unknown_attribute_is_a_filter_error_naming_the_known_ones(catalog):
    bound = request_filter(where('Items.COLOR IN ("red")'))
    with pytest.raises(FilterEvaluationError, match="no item attribute 'COLOR'.*GENRE, price"):
        filters.item_masks(bound, catalog)
    with pytest.raises(FilterError, match="no item attribute 'COLOR'"):
        catalog.masks(Filters(expression=bound))
