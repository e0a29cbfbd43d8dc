"""The demo page's server side through Flask's test client: the first view of a user or an
item, the read-only JSON routes, score formatting and the assets (the browser tests in
tests/browser drive the page itself)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from browser.movies import HISTORIES, HOSTILE, MOVIES, movie_model
from known_answer import known_answer

from mfrec.serve.app import create_app
from mfrec.serve.recommender import Recommender
from mfrec.serve.settings import ServingSettings
from mfrec.serve.webcatalog import format_score
from mfrec.train.interactions import Interactions
from mfrec.train.item_features import seen_timestamps

TITLES = dict((item_id, title) for item_id, title, _ in MOVIES)


def make_client(artifact=None):
    recommender = Recommender(artifact or movie_model(), "cpu")
    return create_app(recommender, settings=ServingSettings()).test_client()


@pytest.fixture
def client():
    return make_client()


def cells(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<td class="{css_class}">([^<]*)</td>', html)


def test_a_user_page_shows_the_history_newest_first_then_the_api_s_recommendations(client):
    html = client.get("/?user_id=196&top_n=3").text
    newest = [item for item, _ in sorted(HISTORIES["196"], key=lambda pair: -pair[1])]
    history = html[html.index('id="history"') : html.index('id="results"')]
    assert re.findall(r'href="\?item_id=([^&]+)&', history) == newest
    assert cells(history, "date") == ["1997-09-29", "1997-09-23", "1997-09-21"]
    assert "Action, Sci-Fi" in history and "The 3 newest of 3 items." in history
    answer = client.post(
        "/invocations",
        json={"user_id": "196", "top_n": "3"},
        headers={"Accept": "application/json"},
    ).get_json()
    results = html[html.index('id="results"') :]
    item_ids = answer["predictions"][0]["item_ids"]
    assert re.findall(r'href="\?item_id=([^&]+)&', results) == item_ids  # each one a link
    assert cells(results, "score") == [
        format_score(s, "score") for s in answer["predictions"][0]["scores"]
    ]


def test_an_unknown_user_gets_a_note_and_interaction_counts(client):
    html = client.get("/?user_id=nobody&top_n=2").text
    assert "This user is not in the model: no history." in html
    assert "most popular items (scores are interaction counts)" in html
    assert '<th scope="col" class="score">interactions</th>' in html
    assert cells(html, "score") == ["1,434", "1,434"]  # 1234 + 100 x 2 users each


def test_an_item_page_names_the_item_and_dates_need_seen_timestamps():
    html = make_client(movie_model(dates=False)).get("/?item_id=50").text
    assert "Items like 50: Star Wars (1977)" in html
    html = make_client(movie_model(dates=False)).get("/?user_id=22").text
    assert "(this model has no dates)" in html and 'class="date"' not in html


def test_titles_and_typed_text_are_escaped(client):
    html = client.get("/?user_id=186&top_n=12").text
    assert HOSTILE not in html and "&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;" in html
    hostile = client.get('/?user_id="><script>alert(1)</script>').text
    assert "<script>alert" not in hostile and "&lt;script&gt;alert(1)" in hostile


def test_search_matches_titles_in_any_case_most_popular_first(client):
    found = client.get("/web/search?q=STAR").get_json()["items"]
    assert [row["item_id"] for row in found] == ["50", "222"]  # 50 is seen by 2 users
    assert found[0] == {
        "item_id": "50",
        "title": "Star Wars (1977)",
        "attributes": {"genre": ["Action", "Sci-Fi"]},
    }
    assert client.get("/web/search?q=s&limit=2").get_json()["items"][1]["item_id"] == "1"
    assert client.get("/web/search?q=%20").get_json() == {"items": []}
    assert client.get("/web/search?q=258").get_json()["items"][0]["title"] == "Contact (1997)"


def test_items_and_history_routes(client):
    rows = client.get("/web/items?id=1&id=nope&id=50").get_json()["items"]
    assert [(row["item_id"], row["title"]) for row in rows] == [
        ("1", TITLES["1"]),
        ("50", TITLES["50"]),
    ]
    history = client.get("/web/users/244/history?limit=2").get_json()
    assert (history["known"], history["total"]) == (True, 4)
    assert [row["item_id"] for row in history["items"]] == ["288", "1"]
    assert client.get("/web/users/nobody/history").get_json()["known"] is False


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "limit=501"])
def test_a_bad_limit_is_a_one_line_400(client, query):
    response = client.get("/web/search?q=a&" + query)
    assert response.status_code == 400
    assert response.text.startswith("limit must be an integer from 1 to 500, got ")


def test_a_model_without_metadata_shows_ids_and_no_filters():
    html = make_client(known_answer()).get("/?user_id=685&top_n=2").text
    assert 'class="facet"' not in html and "trending items" not in html
    assert '<a href="?item_id=i0&amp;top_n=2">i0</a>' in html


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (3.14159, "score", "3.14"),
        (-0.001, "score", "0.00"),
        (0.125, "score", "0.13"),  # halves away from zero, as JavaScript writes them
        (-2.5, "popular", "-3"),
        (1234567.0, "popular", "1,234,567"),
        (12.25, "trending", "12.3"),
        (float("nan"), "score", "–"),
    ],
)
def test_format_score(value, kind, text):
    assert format_score(value, kind) == text


def test_the_page_loads_nothing_from_elsewhere(client):
    html = client.get("/").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith(("/", "?")) for a in assets)
    for asset in ("/web/static/web.js", "/web/static/web.css"):
        with client.get(asset) as response:
            body = response.text
        assert body and "http" not in body and "//" + "cdn" not in body and "@import" not in body


def test_seen_timestamps_are_each_pairs_newest_time_in_csr_order():
    # user 0: item 2 at 50 and 10, item 0 at 30; user 1: item 1 at 5; user 2: item 0 at 7
    data = Interactions(
        user_idx=np.array([0, 1, 0, 0, 2]),
        item_idx=np.array([2, 1, 0, 2, 0]),
        user_ids=np.array(["a", "b", "c"]),
        item_ids=np.array(["x", "y", "z"]),
        timestamps=np.array([50, 5, 30, 10, 7]),
    )
    indptr, indices = data.to_csr()
    newest = {}
    for u, i, t in zip(data.user_idx, data.item_idx, data.timestamps, strict=True):
        newest[u, i] = max(t, newest.get((u, i), t))
    users = np.repeat(np.arange(3), np.diff(indptr))
    expected = [newest[u, i] for u, i in zip(users, indices, strict=True)]
    assert seen_timestamps(data).tolist() == expected == [30, 50, 5, 7]
    assert seen_timestamps(dataclasses.replace(data, timestamps=None)) is None
