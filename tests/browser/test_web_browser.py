"""The demo page in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``,
through ``executable_path``: Playwright's own browser downloads are not possible here) against
``mfrec serve``'s app on a free loopback port. Each test clicks through as a person would,
checks the DOM against what ``/invocations`` answers for the same request, and saves
screenshots in its temporary folder. Skipped when Playwright or Chromium is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request

import pytest
from browser.movies import HOSTILE, movie_model
from werkzeug.serving import make_server

from mfrec.local_server import free_port
from mfrec.serve.app import create_app
from mfrec.serve.settings import ServingSettings
from mfrec.serve.webcatalog import format_score
from mfrec.train.artifact import save

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
CHROMIUM = os.environ.get("MFREC_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (apt-get install chromium, or set MFREC_CHROMIUM)"
)


class Server:
    """The app of ``mfrec serve`` for a saved model, on a free loopback port, in a thread of
    this process (a gunicorn child would add 15 s of imports to every run)."""

    def __init__(self, model_dir) -> None:
        settings = ServingSettings(device="cpu")
        app = create_app(model_dir=model_dir, settings=settings)
        self.http = make_server("127.0.0.1", free_port(), app, threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("web") / "model"
    save(movie_model(), model_dir)
    running = Server(model_dir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    errors = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == []  # no JavaScript error on any page


def invoke(server, record: dict) -> dict:
    """The API's own answer to one JSON record (what the page must show)."""
    request = urllib.request.Request(
        server.url + "/invocations",
        data=json.dumps(record).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["predictions"][0]


def shown(page) -> tuple[list[str], list[str]]:
    """The item ids and score texts of the results table."""
    rows = page.locator("#results tbody tr")
    return rows.locator("td:nth-child(2)").all_inner_texts(), rows.locator(
        "td.score"
    ).all_inner_texts()


def expected(answer: dict, kind: str) -> tuple[list[str], list[str]]:
    return answer["item_ids"], [format_score(s, kind) for s in answer["scores"]]


def test_a_user_then_an_item_link_to_its_similar_items(page, server, tmp_path):
    page.goto(server.url + "/")
    page.get_by_label("User id").fill("196")
    page.get_by_label("How many").fill("5")
    page.get_by_role("button", name="Recommend").click()
    page.wait_for_selector("#history tbody tr")
    page.screenshot(path=tmp_path / "user.png", full_page=True)
    assert page.locator("#results-heading").inner_text() == "Recommendations for 196"
    assert shown(page) == expected(invoke(server, {"user_id": "196", "top_n": "5"}), "score")
    dates = page.locator("#history td.date").all_inner_texts()
    assert dates == sorted(dates, reverse=True) and len(dates) == 3  # newest first
    assert page.locator("#history tbody tr").first.locator("td.attrs").inner_text()

    first = page.locator("#results tbody tr").first
    item_id, title = first.locator("td:nth-child(2)").inner_text(), first.locator("a").inner_text()
    first.locator("a").click()
    page.wait_for_selector("#results tbody tr")
    page.screenshot(path=tmp_path / "similar.png", full_page=True)
    assert page.locator("#results-heading").inner_text() == f"Items like {item_id}: {title}"
    answer = invoke(server, {"item_id": item_id, "top_n": "5"})
    assert shown(page) == expected(answer, "score")


def test_an_unknown_user_gets_the_popular_list_with_a_note(page, server, tmp_path):
    page.goto(server.url + "/?user_id=nobody&top_n=4")
    page.screenshot(path=tmp_path / "unknown.png", full_page=True)
    assert "not in the model" in page.locator("#results .note").inner_text()
    assert page.locator("#results th.score").inner_text() == "interactions"
    assert shown(page) == expected(invoke(server, {"type": "popular", "top_n": "4"}), "popular")


def test_a_new_visitor_builds_a_history_and_gets_recommendations_without_reload(
    page, server, tmp_path
):
    page.goto(server.url + "/")
    page.evaluate("window.sameDocument = true")
    page.get_by_label("Search the catalogue by title").fill("star")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_role("button", name="Add Star Wars (1977)").click()
    page.get_by_label("Search the catalogue by title").fill("alien")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Add Alien (1979)").click()
    page.wait_for_function("document.querySelectorAll('#picks li').length === 2")
    page.wait_for_selector("#results-heading:text('Recommendations for your picks')")
    assert page.get_by_role("button", name="Add Alien (1979)").is_disabled()  # picked once
    assert "2 picked" in page.locator("#picks-status").inner_text()
    page.screenshot(path=tmp_path / "visitor.png", full_page=True)
    assert page.evaluate("window.sameDocument") is True  # no reload
    answer = invoke(server, {"history": ["50", "183"], "top_n": "10"})
    assert shown(page) == expected(answer, "score")

    page.get_by_role("button", name="Remove Alien (1979)").click()
    page.wait_for_function("document.querySelectorAll('#picks li').length === 1")
    answer = invoke(server, {"history": ["50"], "top_n": "10"})
    page.wait_for_function(
        "ids => [...document.querySelectorAll('#results tbody td:nth-child(2)')]"
        ".map(td => td.textContent).join() === ids",
        arg=",".join(answer["item_ids"]),
    )
    assert shown(page) == expected(answer, "score")


def test_a_genre_filter_and_the_popular_and_trending_views_use_the_api(page, server, tmp_path):
    page.goto(server.url + "/?user_id=186&top_n=5")
    page.get_by_label("Genre").select_option("Sci-Fi")
    page.wait_for_selector("#results-heading")
    record = {"user_id": "186", "top_n": "5", "include_attributes": {"genre": ["Sci-Fi"]}}
    answer = invoke(server, record)
    page.wait_for_function(
        "n => document.querySelectorAll('#results tbody tr').length === n",
        arg=len(answer["item_ids"]),
    )
    page.screenshot(path=tmp_path / "filtered.png", full_page=True)
    assert shown(page) == expected(answer, "score")
    genres = page.locator("#results tbody td.attrs").all_inner_texts()
    assert genres and all("Sci-Fi" in g for g in genres)

    for view, heading in (("popular", "Popular items"), ("trending", "Trending items")):
        page.get_by_label("Show").select_option(view)
        page.wait_for_selector(f"#results-heading:text('{heading}')")
        page.screenshot(path=tmp_path / f"{view}.png", full_page=True)
        record = {"type": view, "top_n": "5", "include_attributes": {"genre": ["Sci-Fi"]}}
        assert shown(page) == expected(invoke(server, record), view)


def test_phone_width_keyboard_and_hostile_text(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.keyboard.press("Tab")  # the "mfrec" home link
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "user_id"
    page.keyboard.type("<script>window.pwned=1</script>")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results-heading")
    assert "<script>window.pwned=1</script>" in page.locator("#results-heading").inner_text()
    page.goto(server.url + "/?user_id=186&top_n=12")
    page.screenshot(path=tmp_path / "phone.png", full_page=True)
    overflow = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    assert page.evaluate(overflow)  # nothing wider than the phone
    for cell in page.locator("#results td.score").all():  # scores in view, not scrolled off
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 360
    assert page.get_by_role("link", name=HOSTILE).count() == 1  # a title stays text
    page.get_by_label("Search the catalogue by title").fill("<img")
    page.keyboard.press("Enter")
    page.wait_for_selector("#search-results li")
    assert page.locator("#search-results .title").inner_text() == HOSTILE
    assert page.locator("img").count() == 0 and page.evaluate("window.pwned") is None
    unlabelled = page.evaluate(
        "[...document.querySelectorAll('input, select')]"
        ".filter(e => !e.labels || !e.labels.length).map(e => e.id || e.name)"
    )
    assert unlabelled == []
    context.close()


def test_scores_read_the_same_from_the_server_and_the_page(page, server):
    page.goto(server.url + "/")
    for value in (0.0, -0.0, -0.001, 3.14159, -2.5, 1234.0, 1234567.891, 0.05, 12.25):
        for kind in ("score", "popular", "trending"):
            written = page.evaluate("([v, k]) => window.mfrecFormatScore(v, k)", [value, kind])
            assert written == format_score(value, kind), (value, kind)
