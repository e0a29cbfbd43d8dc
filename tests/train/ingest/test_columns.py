"""Which column is the user, the item, the timestamp, the value and the event type."""

from __future__ import annotations

import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest.columns import (
    ALIASES,
    ColumnMap,
    is_known_name,
    looks_like_timestamp,
    map_columns,
    normalise,
    positional_names,
)

NO_OPTIONS: dict[str, str | None] = {role: None for role in ALIASES}


@pytest.mark.parametrize(
    "name", ["user_id", "USER_ID", "userId", "userID", "User ID", "USER-ID", " user.id "]
)
def test_spellings_of_one_name_normalise_alike(name):
    assert normalise(name) == "userid"
    assert is_known_name(name)


@pytest.mark.parametrize("name", ["cust", "column_1", "", "user_name", "id"])
def test_unknown_names(name):
    assert not is_known_name(name)


def test_every_alias_is_already_normalised_and_belongs_to_one_role():
    aliases = [alias for spellings in ALIASES.values() for alias in spellings]
    assert all(normalise(alias) == alias for alias in aliases)
    assert len(aliases) == len(set(aliases))


def test_positional_names_count_from_one():
    assert positional_names(3) == ["column_1", "column_2", "column_3"]
    assert positional_names(0) == []


# --- looks_like_timestamp ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["978300760", "1600000000.5"], True),  # Unix seconds
        (["1600000000000"], True),  # milliseconds are large numbers too
        (["100000000"], True),  # 1e8 exactly: the smallest Unix time accepted
        (["99999999"], False),  # a large event value, not a time
        (["5", "1600000000"], False),  # every value must qualify
        (["2020-01-31", "2021-12-01T10:00:00+02:00", " 1999-01-01 "], True),
        (["2020-01-31", "1600000000"], False),  # dates and numbers mixed
        (["31/01/2020"], False),
        (["abc"], False),
        (["", "  "], False),  # nothing to judge by
        ([], False),
        (["", "1600000000"], True),  # blanks are ignored
    ],
)
def test_looks_like_timestamp(values, expected):
    assert looks_like_timestamp(values) is expected


# --- map_columns with a header ----------------------------------------------------------------


def test_header_roles_take_the_best_alias_and_ignore_the_rest():
    names = ["score", "rating", "Item", "USER_ID", "time", "timestamp", "type", "title"]
    mapping = map_columns(names, NO_OPTIONS, has_header=True)
    assert mapping.as_dict() == {
        "user": "USER_ID",
        "item": "Item",
        "timestamp": "timestamp",  # 'timestamp' is a better alias than 'time'
        "value": "rating",  # and 'rating' than 'score', wherever the columns are
        "event_type": "type",
    }
    assert mapping.ignored == ("score", "time", "title")
    assert mapping.how == "header"


def test_the_same_alias_twice_takes_the_first_column():
    mapping = map_columns(["user_id", "USER_ID", "item_id"], NO_OPTIONS, has_header=True)
    assert (mapping.user, mapping.ignored) == ("user_id", ("USER_ID",))


def test_explicit_names_win_and_are_not_reused_for_another_role():
    options = {**NO_OPTIONS, "item": "movie", "user": "item_id"}
    mapping = map_columns(["item_id", "movie", "user_id"], options, has_header=True)
    assert (mapping.user, mapping.item, mapping.ignored) == ("item_id", "movie", ("user_id",))
    assert mapping.how == "header, explicit names for item, user"


def test_describe_lists_the_roles_used_and_the_ignored_columns():
    mapping = map_columns(["user_id", "item_id", "ts", "title"], NO_OPTIONS, has_header=True)
    assert (
        mapping.describe()
        == "user='user_id', item='item_id', timestamp='ts' (header); ignored: title"
    )


def test_notes_do_not_count_when_comparing_maps():
    assert ColumnMap("u", "i", notes=("a",)) == ColumnMap("u", "i")


def test_missing_user_and_item_columns_name_the_accepted_spellings_and_the_fix():
    with pytest.raises(
        DataValidationError,
        match=r"^d\.csv: no recognisable user or item column among the columns found "
        r"\('cust', 'prod'\)\. Accepted names .* are user: user_id, .*; item: item_id, .*"
        r"--user-column NAME \(hyperparameter user_column\)",
    ):
        map_columns(["cust", "prod"], NO_OPTIONS, has_header=True, source="d.csv")


def test_missing_item_column_alone_suggests_the_item_option():
    with pytest.raises(DataValidationError, match=r"no recognisable item column .*--item-column"):
        map_columns(["user_id", "title"], NO_OPTIONS, has_header=True)


def test_explicit_name_that_is_not_in_the_file_lists_its_columns():
    with pytest.raises(
        DataValidationError,
        match=r"d\.csv: the timestamp column 'when' given in the options is not in the file; "
        r"its columns are: user_id, item_id\. Fix the column name option\.",
    ):
        map_columns(
            ["user_id", "item_id"],
            {**NO_OPTIONS, "timestamp": "when"},
            has_header=True,
            source="d.csv",
        )


# --- map_columns without a header -------------------------------------------------------------


def headerless(rows: list[list[str]], **options: str) -> ColumnMap:
    names = positional_names(len(rows[0]))
    return map_columns(names, {**NO_OPTIONS, **options}, has_header=False, sample_rows=rows)


@pytest.mark.parametrize(
    ("rows", "roles"),
    [
        ([["1", "10"]], ("user", "item")),
        ([["1", "10", "978300760"], ["2", "20", "978300761"]], ("user", "item", "timestamp")),
        ([["1", "10", "2020-01-01"]], ("user", "item", "timestamp")),
        ([["1", "10", "5"], ["2", "20", "978300761"]], ("user", "item", "value")),
        ([["1", "10", "5", "978300760"]], ("user", "item", "value", "timestamp")),  # u.data
        ([["1", "10", "978300760", "5"]], ("user", "item", "timestamp", "value")),  # swapped
        # both time-like: the u.data order stands
        ([["1", "10", "978300760", "978300761"]], ("user", "item", "value", "timestamp")),
    ],
)
def test_positional_rule(rows, roles):
    mapping = headerless(rows)
    expected = {role: f"column_{i + 1}" for i, role in enumerate(roles)}
    assert {role: name for role, name in mapping.as_dict().items() if name} == expected
    assert mapping.how.startswith(f"headerless rule: {len(roles)} columns = {', '.join(roles)}")


def test_five_headerless_columns_are_refused_with_the_options_to_use():
    with pytest.raises(
        DataValidationError,
        match=r"d\.dat: the file has no header and 5 columns, so mfrec cannot tell which is "
        r"which\. Add a header row .* --user-column column_1 --item-column column_2",
    ):
        map_columns(positional_names(5), NO_OPTIONS, has_header=False, source="d.dat")


def test_five_headerless_columns_are_fine_once_user_and_item_are_named():
    mapping = headerless([["a", "b", "c", "d", "e"]], user="column_2", item="column_5")
    assert (mapping.user, mapping.item, mapping.timestamp) == ("column_2", "column_5", None)
    assert mapping.ignored == ("column_1", "column_3", "column_4")
    assert mapping.how == (
        "headerless, columns named in the options, explicit names for item, user"
    )


def test_an_explicit_positional_name_takes_that_column_from_the_rule():
    mapping = headerless([["1", "10", "978300760", "5"]], value="column_3", timestamp="column_4")
    assert mapping.as_dict() == {
        "user": "column_1",
        "item": "column_2",
        "timestamp": "column_4",
        "value": "column_3",
        "event_type": None,
    }
