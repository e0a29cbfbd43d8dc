"""The Catalog on a small known-answer item side: id lookup with unknown ids reported, popular
and trending lists with banned/allowed masks and ties, attribute filters on multi-valued ``|``
fields, and the FilterError messages. End-to-end filtering through the Recommender is in
test_request_types.py; these tests call the Catalog directly."""

from __future__ import annotations

import numpy as np
import pytest

from mfrec.serve.catalog import Catalog, FilterError
from mfrec.serve.requests import Filters
from mfrec.train.artifact import ATTRIBUTE_PREFIX, TRENDING, ModelArtifact

ITEM_IDS = [f"i{k}" for k in range(8)]
# Descending counts, ties in index order: 1 3 (8) | 6 (7) | 0 (5) | 2 7 (3) | 5 (2) | 4 (1).
POPULARITY = [5, 8, 3, 8, 1, 2, 7, 3]
POPULAR_ORDER = [1, 3, 6, 0, 2, 7, 5, 4]
# Rounded to 6 decimals when listed: 2/3 -> 0.666667. Order 2 5 1 0, then the zeros by index.
TRENDING_COUNTS = [0.1, 1 / 3, 2 / 3, 0.0, 0.0, 0.5, 0.0, 0.0]
TRENDING_ORDER = [2, 5, 1, 0, 3, 4, 6, 7]
GENRES = ["Comedy", "Comedy|Drama", "Drama", "Horror", "Comedy", "Drama", "Horror", ""]
DECADES = ["90s", "80s|90s", "70s", "90s", "80s", "90s", "70s", ""]


def artifact(extra: dict | None = None, item_ids=ITEM_IDS, popularity=POPULARITY):
    num_items = len(item_ids)
    return ModelArtifact(
        np.ones((1, 2), np.float32),
        np.ones((num_items, 2), np.float32),
        np.zeros(1, np.float32),
        np.zeros(num_items, np.float32),
        np.array(["u0"]),
        np.array(item_ids),
        np.asarray(popularity, np.float32),
        np.array([0, 0]),
        np.empty(0, np.int64),
        extra={} if extra is None else extra,
    )


@pytest.fixture
def catalog() -> Catalog:
    extra = {
        TRENDING: np.array(TRENDING_COUNTS),
        ATTRIBUTE_PREFIX + "genre": np.array(GENRES),
        ATTRIBUTE_PREFIX + "decade": np.array(DECADES),
    }
    return Catalog(artifact(extra))


def none_banned() -> np.ndarray:
    return np.empty(0, np.int64)


# --- ids and indices -------------------------------------------------------------------------


def test_item_ids_are_python_strings_in_index_order(catalog):
    assert catalog.num_items == 8
    assert catalog.item_ids.dtype == object and catalog.item_ids.tolist() == ITEM_IDS
    assert all(type(item_id) is str for item_id in catalog.item_ids)
    assert catalog.index == {item_id: idx for idx, item_id in enumerate(ITEM_IDS)}


def test_indices_keep_order_and_duplicates_and_report_unknown_ids(catalog):
    idx, unknown = catalog.indices(["i3", "nope", "i0", "i3", "", "I1"])
    assert idx.dtype == np.int64 and idx.tolist() == [3, 0, 3]
    assert unknown == ["nope", "", "I1"]  # ids are case-sensitive
    idx, unknown = catalog.indices(np.array(["i7", "i2"]))  # NumPy strings look up as str
    assert (idx.tolist(), unknown) == ([7, 2], [])


def test_indices_of_nothing_is_an_empty_index_array(catalog):
    idx, unknown = catalog.indices(())
    assert (idx.dtype, idx.shape, unknown) == (np.int64, (0,), [])


def test_ids_that_look_alike_stay_apart():
    catalog = Catalog(artifact(item_ids=["1", "01", "1.0", " 1"], popularity=[1, 1, 1, 1]))
    idx, unknown = catalog.indices(["01", "1", " 1", "001"])
    assert (idx.tolist(), unknown) == ([1, 0, 3], ["001"])


# --- popular and trending lists --------------------------------------------------------------


def test_lists_order_by_descending_count_ties_in_index_order(catalog):
    order, counts = catalog.ordered("popular")
    assert order.tolist() == POPULAR_ORDER
    assert counts.tolist() == [8, 8, 7, 5, 3, 3, 2, 1]
    order, counts = catalog.ordered("trending")
    assert order.tolist() == TRENDING_ORDER
    assert counts.tolist() == [0.666667, 0.5, 0.333333, 0.1, 0, 0, 0, 0]


def test_counts_are_float64_and_unrounded(catalog):
    assert catalog.counts("popular").dtype == np.float64
    assert catalog.counts("popular").tolist() == POPULARITY
    assert catalog.counts("trending").tolist() == TRENDING_COUNTS


def test_trending_needs_its_extra_array(catalog):
    assert catalog.has_list("popular") and catalog.has_list("trending")
    plain = Catalog(artifact())
    assert plain.has_list("popular") and not plain.has_list("trending")


def test_best_of_list_without_masks_is_the_head_of_the_list(catalog):
    idx, counts = catalog.best_of_list("popular", 3, none_banned(), None)
    assert (idx.tolist(), counts.tolist()) == ([1, 3, 6], [8, 8, 7])
    idx, counts = catalog.best_of_list("popular", 100, none_banned(), None)
    assert idx.tolist() == POPULAR_ORDER
    idx, counts = catalog.best_of_list("trending", 2, none_banned(), None)
    assert (idx.tolist(), counts.tolist()) == ([2, 5], [0.666667, 0.5])


def test_best_of_list_skips_banned_items(catalog):
    idx, counts = catalog.best_of_list("popular", 3, np.array([3]), None)
    assert (idx.tolist(), counts.tolist()) == ([1, 6, 0], [8, 7, 5])
    idx, _ = catalog.best_of_list("popular", 3, np.array([1, 1, 3]), None)  # repeats are fine
    assert idx.tolist() == [6, 0, 2]
    idx, counts = catalog.best_of_list("popular", 3, np.arange(8), None)
    assert (idx.shape, counts.shape) == ((0,), (0,))


def test_best_of_list_keeps_only_allowed_items_in_list_order(catalog):
    # 2 and 7 tie at 3: the lower index first, whatever order the allowed items come in.
    idx, counts = catalog.best_of_list("popular", 5, none_banned(), np.array([7, 4, 2]))
    assert (idx.tolist(), counts.tolist()) == ([2, 7, 4], [3, 3, 1])  # fewer than top_n
    idx, _ = catalog.best_of_list("popular", 5, np.array([2]), np.array([7, 4, 2]))
    assert idx.tolist() == [7, 4]  # banned wins over allowed
    idx, _ = catalog.best_of_list("popular", 5, none_banned(), np.empty(0, np.int64))
    assert idx.tolist() == []  # an empty allowed list allows nothing


def test_best_of_list_matches_a_slow_loop_with_many_ties():
    rng = np.random.default_rng(5)
    num_items = 40
    counts = rng.integers(0, 4, num_items).astype(np.float32)  # four values: ties everywhere
    catalog = Catalog(artifact(item_ids=[f"x{k}" for k in range(num_items)], popularity=counts))
    for _ in range(30):
        banned = rng.choice(num_items, rng.integers(0, 10), replace=True)
        allowed = rng.choice(num_items, 15, replace=False) if rng.random() < 0.5 else None
        top_n = int(rng.integers(1, num_items + 2))
        idx, got = catalog.best_of_list("popular", top_n, banned, allowed)
        ranked = sorted(range(num_items), key=lambda i: (-counts[i], i))
        want = [
            i
            for i in ranked
            if i not in set(banned.tolist()) and (allowed is None or i in set(allowed.tolist()))
        ][:top_n]
        assert idx.tolist() == want
        assert got.tolist() == counts[want].tolist()


# --- attributes and filters ------------------------------------------------------------------


def test_attribute_values_by_name(catalog):
    assert catalog.attribute("genre").tolist() == GENRES
    assert catalog.attribute("colour") is None
    assert Catalog(artifact()).attribute("genre") is None


def test_no_filters_ban_nothing_and_allow_everything(catalog):
    banned, allowed = catalog.masks(Filters())
    assert (banned.dtype, banned.tolist(), allowed) == (np.int64, [], None)


def genre(*values: str) -> tuple:
    return (("genre", values),)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        (("Comedy",), [0, 1, 4]),  # i1 is "Comedy|Drama": it has both values
        (("Drama",), [1, 2, 5]),
        (("Drama", "Comedy"), [0, 1, 2, 4, 5]),  # several values: any of them
        (("Comedy", "Comedy"), [0, 1, 4]),
        (("Western",), []),  # a value no item has matches nothing
        (("",), []),  # i7 has no genre: it matches no value, not even ""
        ((), []),
    ],
)
def test_include_attributes_match_any_value_of_multi_valued_fields(catalog, values, want):
    banned, allowed = catalog.masks(Filters(include_attributes=genre(*values)))
    assert banned.tolist() == []
    assert allowed.dtype == np.int64 and allowed.tolist() == want


def test_exclude_filters_ban_the_items_and_the_attribute_values(catalog):
    filters = Filters(exclude_items=("i2", "nope", "i2"), exclude_attributes=genre("Horror"))
    banned, allowed = catalog.masks(filters)
    assert np.unique(banned).tolist() == [2, 3, 6] and allowed is None
    banned, _ = catalog.masks(Filters(exclude_attributes=genre("Drama")))
    assert np.unique(banned).tolist() == [1, 2, 5]  # "Comedy|Drama" is excluded too


def test_include_filters_intersect_across_fields(catalog):
    items = Filters(include_items=("i5", "i1", "i0", "i5", "nope"))
    assert catalog.masks(items)[1].tolist() == [0, 1, 5]  # unique, unknown ids dropped
    with_genre = Filters(include_items=items.include_items, include_attributes=genre("Drama"))
    assert catalog.masks(with_genre)[1].tolist() == [1, 5]
    two_attributes = Filters(include_attributes=genre("Comedy") + (("decade", ("90s",)),))
    assert catalog.masks(two_attributes)[1].tolist() == [0, 1]  # Comedy and the 90s
    nothing = Filters(include_items=())  # an empty include list allows no item
    assert catalog.masks(nothing)[1].tolist() == []


def test_masks_and_best_of_list_together(catalog):
    filters = Filters(exclude_items=("i1",), include_attributes=genre("Comedy", "Horror"))
    banned, allowed = catalog.masks(filters)
    idx, counts = catalog.best_of_list("popular", 3, banned, allowed)
    assert (idx.tolist(), counts.tolist()) == ([3, 6, 0], [8, 7, 5])


def test_attribute_filters_match_a_slow_set_computation():
    rng = np.random.default_rng(9)
    words = ["a", "b", "c", "d"]
    num_items = 30
    fields = [
        "|".join(rng.choice(words, rng.integers(0, 3), replace=False)) for _ in range(num_items)
    ]
    catalog = Catalog(
        artifact(
            {ATTRIBUTE_PREFIX + "tag": np.array(fields)},
            item_ids=[f"x{k}" for k in range(num_items)],
            popularity=np.ones(num_items),
        )
    )
    for _ in range(20):
        include = tuple(rng.choice(words, rng.integers(1, 3), replace=False).tolist())
        exclude = tuple(rng.choice(words, 1).tolist())
        filters = Filters(
            include_attributes=(("tag", include),), exclude_attributes=(("tag", exclude),)
        )
        banned, allowed = catalog.masks(filters)
        tags = [set(field.split("|")) - {""} for field in fields]
        assert allowed.tolist() == [i for i, t in enumerate(tags) if t & set(include)]
        assert np.unique(banned).tolist() == [i for i, t in enumerate(tags) if t & set(exclude)]


def test_an_unknown_attribute_is_a_filter_error_naming_the_known_ones(catalog):
    message = (
        r"the model has no item attribute 'colour' \(it has: decade, genre\); "
        "train with item metadata holding that column"
    )
    with pytest.raises(FilterError, match=message):
        catalog.masks(Filters(include_attributes=(("colour", ("red",)),)))
    with pytest.raises(FilterError, match=message):
        catalog.masks(Filters(exclude_attributes=(("colour", ("red",)),)))
    with pytest.raises(FilterError, match=r"'Genre' \(it has: decade, genre\)"):
        catalog.masks(Filters(include_attributes=(("Genre", ("Drama",)),)))


def test_a_model_without_metadata_says_it_has_no_attributes():
    with pytest.raises(FilterError, match=r"no item attribute 'genre' \(it has: none\)"):
        Catalog(artifact()).masks(Filters(include_attributes=genre("Drama")))
    assert issubclass(FilterError, ValueError)
