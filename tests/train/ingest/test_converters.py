"""Column conversions: ids, event values, Unix seconds and the id → index map."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from mfrec.train.ingest.converters import (
    factorize,
    timestamp_unit,
    to_float,
    to_ids,
    to_unix_seconds,
)

T0 = 1_577_836_800  # 2020-01-01T00:00:00Z


# --- to_ids -----------------------------------------------------------------------------------


def test_string_ids_are_trimmed_and_null_markers_are_bad():
    column = pa.chunked_array([[" a ", "nan", "None", None], ["007", "", "NULL", "b c"]])
    ids = to_ids(column, "user")
    assert ids.values.to_pylist() == ["a", "nan", "None", None, "007", "", "NULL", "b c"]
    assert ids.bad.tolist() == [False, True, True, True, False, True, True, False]
    assert ids.reason == "an empty or null user id"


def test_integer_ids_stay_integers_and_nulls_are_bad():
    ids = to_ids(pa.array([685, None, 12], pa.int32()), "item")
    assert ids.values.type == pa.int64()
    assert ids.values.to_pylist() == [685, None, 12]
    assert ids.bad.tolist() == [False, True, False]
    assert ids.reason == "an empty or null item id"


def test_whole_float_ids_become_integers_not_decimal_text():
    ids = to_ids(pa.array([7.0, None, 12.0]), "item")
    assert ids.values.type == pa.int64()
    assert ids.values.to_pylist() == [7, None, 12]
    assert ids.bad.tolist() == [False, True, False]


def test_fractional_float_ids_are_text_and_nan_is_bad():
    ids = to_ids(pa.array([7.5, 1.0, float("nan")]), "item")
    assert ids.values.to_pylist() == ["7.5", "1", "nan"]
    assert ids.bad.tolist() == [False, False, True]


def test_other_id_types_are_read_as_text():
    ids = to_ids(pa.array([True, False]), "user")
    assert ids.values.to_pylist() == ["true", "false"]
    assert not ids.bad.any()


# --- to_float ---------------------------------------------------------------------------------


def test_numeric_text_values_and_what_is_bad():
    values = to_float(pa.array(["5", " 2.5 ", "1e3", "-1", "x", "", None, "inf", "nan"]))
    np.testing.assert_array_equal(values.values[:4], [5.0, 2.5, 1000.0, -1.0])
    assert values.values.dtype == np.float64
    assert values.bad.tolist() == [False] * 4 + [True] * 5
    assert values.reason == "a missing or non-numeric event value"


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (pa.array([1, None, 3], pa.int32()), [1.0, np.nan, 3.0]),
        (pa.array([0.5, None]), [0.5, np.nan]),
        (pa.array([True, False, None]), [1.0, 0.0, np.nan]),
    ],
)
def test_numeric_and_boolean_columns_become_floats_with_nulls_bad(array, expected):
    values = to_float(pa.chunked_array([array]))
    np.testing.assert_array_equal(values.values, expected)
    assert values.bad.tolist() == np.isnan(expected).tolist()


# --- timestamp_unit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("magnitude", "unit"),
    [
        (T0, "s"),
        (99_999_999_999, "s"),  # 1e11 s is the year 5138
        (100_000_000_000, "ms"),
        (T0 * 1_000, "ms"),
        (T0 * 1_000_000, "us"),
        (T0 * 1_000_000_000, "ns"),
    ],
)
def test_timestamp_unit_from_the_magnitude(magnitude, unit):
    assert timestamp_unit(np.array([magnitude], dtype=np.int64)) == unit


def test_timestamp_unit_follows_the_median_not_outliers():
    values = np.array([T0, T0 + 1, T0 + 2, T0 * 1_000], dtype=np.int64)
    assert timestamp_unit(values) == "s"
    assert timestamp_unit(np.array([], dtype=np.int64)) == "s"


# --- to_unix_seconds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "unit"),
    [
        (pa.array([T0, T0 + 61], pa.int64()), "s"),
        (pa.array([T0 * 1_000 + 999, (T0 + 61) * 1_000], pa.int64()), "ms"),
        (pa.array([T0 * 1_000_000 + 5, (T0 + 61) * 1_000_000], pa.int64()), "us"),
        (pa.array([T0 * 10**9, (T0 + 61) * 10**9 + 999_999_999], pa.int64()), "ns"),
        (pa.array([T0 + 0.9, T0 + 61.5]), "s"),
        (pa.array([str(T0), f"{T0 + 61}.7"]), "s"),
        (pa.array([f"{T0}000", f"{T0 + 61}000"]), "ms"),
    ],
)
def test_numeric_times_are_floored_to_seconds_in_the_unit_their_size_implies(array, unit):
    seconds = to_unix_seconds(array)
    assert seconds.values.tolist() == [T0, T0 + 61]
    assert seconds.values.dtype == np.int64
    assert seconds.unit == unit and not seconds.bad.any()


def test_iso_dates_honour_offsets_and_default_to_utc():
    column = pa.array(
        [
            "2020-01-01T00:00:00Z",
            "2020-01-01T01:00:00+01:00",
            "2020-01-01 00:00:00",
            "2020-01-01",
            "2020-01-01T00:00:01.999",
            "1969-12-31T23:59:59.5Z",  # before 1970: floored, not truncated
            "31/01/2020",
            None,
        ]
    )
    seconds = to_unix_seconds(column)
    assert seconds.values[:6].tolist() == [T0, T0, T0, T0, T0 + 1, -1]
    assert seconds.bad.tolist() == [False] * 6 + [True, True]
    assert seconds.unit == "iso8601"
    assert seconds.reason == "a missing or unparseable (not ISO-8601) timestamp"


def test_mostly_numeric_text_reads_the_rest_as_bad_numbers():
    seconds = to_unix_seconds(pa.array([str(T0), "2020-01-01", str(T0 + 1)]))
    assert seconds.values[[0, 2]].tolist() == [T0, T0 + 1]
    assert seconds.bad.tolist() == [False, True, False]
    assert seconds.reason == "a missing or non-numeric timestamp"


def test_arrow_timestamps_and_dates():
    stamps = pa.array([dt.datetime(2020, 1, 1, 0, 0, 1, 999_000), None], pa.timestamp("ms", "UTC"))
    seconds = to_unix_seconds(stamps)
    assert (seconds.values[0], seconds.bad.tolist(), seconds.unit) == (
        T0 + 1,
        [False, True],
        "datetime",
    )
    days = to_unix_seconds(pa.array([dt.date(2020, 1, 2), None]))
    assert (days.values[0], days.bad.tolist(), days.unit) == (T0 + 86_400, [False, True], "date")


def test_null_integer_times_are_bad_and_do_not_sway_the_unit():
    seconds = to_unix_seconds(pa.chunked_array([[T0 * 1_000, None]], pa.int64()))
    assert (seconds.values[0], seconds.bad.tolist(), seconds.unit) == (T0, [False, True], "ms")
    assert seconds.reason == "a missing timestamp"


# --- factorize --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "idx", "uniques"),
    [
        (["10", "2", "10", "3"], [0, 1, 0, 2], ["10", "2", "3"]),
        ([10, 2, 10, 3], [0, 1, 0, 2], ["10", "2", "3"]),
        (["b", "a", "b"], [0, 1, 0], ["b", "a"]),
        # a padded id is another id: '007' and '7', '-05' and '-5', '0x1' and '1' stay apart
        (["7", "007", "7"], [0, 1, 0], ["7", "007"]),
        (["-5", "5", "-05"], [0, 1, 2], ["-5", "5", "-05"]),
        (["1", "0x1", "+1"], [0, 1, 2], ["1", "0x1", "+1"]),
        (["0", "1", "0"], [0, 1, 0], ["0", "1"]),
    ],
)
def test_factorize_numbers_ids_in_order_of_first_appearance(ids, idx, uniques):
    codes, names = factorize(pa.chunked_array([pa.array(ids)]))
    assert codes.tolist() == idx and codes.dtype == np.int64
    assert names.tolist() == uniques


def test_factorize_of_nothing():
    codes, names = factorize(pa.array([], pa.string()))
    assert (codes.shape, codes.dtype, names.shape) == ((0,), np.int64, (0,))
