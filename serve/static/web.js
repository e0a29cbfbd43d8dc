// mfrec's demo page: a client of POST /invocations (the same request types and filters as any
// other client) plus the read-only /web/search and /web/items routes for titles.
// Everything shown is written with textContent, never innerHTML: user input stays text.
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const page = JSON.parse($("#page-data").textContent);
  const results = $("#results");
  const state = {
    mode: results.dataset.mode, // "", "user", "similar_items" or "history"
    userId: results.dataset.userId,
    itemId: results.dataset.itemId,
    known: results.dataset.known === "true",
    heading: results.dataset.heading, // the server's heading of the first view
    picks: [], // rows of /web/items: {item_id, title, attributes}
  };
  const DIGITS = { score: 2, popular: 0, trending: 1 };
  const HEADERS = { score: "score", popular: "interactions", trending: "trending" };

  // The same text as mfrec.serve.webcatalog.format_score.
  function formatScore(value, kind) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const digits = DIGITS[kind];
    const text = value.toLocaleString("en-US", {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    return /^-[0.,]*$/.test(text) ? text.slice(1) : text;
  }

  function el(tag, text, attributes = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function topN() {
    const value = parseInt($("#top_n").value, 10);
    return Number.isInteger(value) && value >= 1 ? Math.min(value, page.max_top_n) : 10;
  }

  function itemLink(row) {
    const query = new URLSearchParams({ item_id: row.item_id, top_n: String(topN()) });
    return el("a", row.title, { href: "?" + query.toString() });
  }

  function attributesText(row) {
    return Object.values(row.attributes)
      .filter((values) => values.length)
      .map((values) => values.join(", "))
      .join("; ");
  }

  async function getJson(url, options) {
    const response = await fetch(url, options);
    const text = await response.text();
    if (!response.ok) throw new Error(text || response.statusText);
    return JSON.parse(text);
  }

  async function details(itemIds) {
    if (!itemIds.length) return [];
    const query = itemIds.map((id) => "id=" + encodeURIComponent(id)).join("&");
    return (await getJson("web/items?" + query)).items;
  }

  // The record this view asks /invocations for, its heading and how its scores read.
  function currentRequest() {
    const view = $("#view").value;
    const record = { top_n: String(topN()) };
    let heading, kind;
    if (view !== "subject") {
      Object.assign(record, { type: view });
      heading = view === "popular" ? "Popular items" : "Trending items";
      kind = view;
    } else if (state.mode === "history" && state.picks.length) {
      Object.assign(record, { type: "history", history: state.picks.map((p) => p.item_id) });
      heading = "Recommendations for your picks";
      kind = "score";
    } else if (state.mode === "user") {
      Object.assign(record, { type: "user", user_id: state.userId });
      heading = state.heading;
      kind = state.known ? "score" : "popular";
    } else if (state.mode === "similar_items") {
      Object.assign(record, { type: "similar_items", item_id: state.itemId });
      heading = state.heading;
      kind = state.known ? "score" : "popular";
    } else {
      return null;
    }
    const chosen = {};
    for (const select of document.querySelectorAll("select.facet")) {
      if (select.value) chosen[select.dataset.attribute] = [select.value];
    }
    if (Object.keys(chosen).length) record.include_attributes = chosen;
    return { record, heading, kind };
  }

  function renderResults(heading, note, error, rows, kind) {
    results.replaceChildren(el("h2", heading, { id: "results-heading" }));
    if (error) results.append(el("p", error, { class: "error" }));
    if (note) results.append(el("p", note, { class: "note" }));
    if (!rows.length) {
      if (!error) results.append(el("p", "No items match.", { class: "note" }));
      return;
    }
    const head = el("tr");
    const names = ["#", "item", "title"].concat(page.facets.length ? [page.facets.join(", ")] : []);
    for (const name of names) head.append(el("th", name, { scope: "col" }));
    head.append(el("th", HEADERS[kind], { scope: "col", class: "score" }));
    const body = el("tbody");
    rows.forEach((row, position) => {
      const tr = el("tr");
      tr.append(el("td", String(position + 1)), el("td", row.item_id));
      const title = el("td");
      title.append(itemLink(row));
      tr.append(title);
      if (page.facets.length) tr.append(el("td", attributesText(row), { class: "attrs" }));
      tr.append(el("td", formatScore(row.score, kind), { class: "score" }));
      body.append(tr);
    });
    const table = el("table");
    const thead = el("thead");
    thead.append(head);
    table.append(thead, body);
    const wrap = el("div", null, { class: "table-wrap" });
    wrap.append(table);
    results.append(wrap);
  }

  async function refresh() {
    const asked = currentRequest();
    if (asked === null) {
      renderResults("Recommendations", "Enter a user id, open an item, or pick items below.",
        null, [], "score");
      return;
    }
    results.setAttribute("aria-busy", "true");
    try {
      const answer = (await getJson("invocations", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(asked.record),
      })).predictions[0];
      const ids = answer.item_ids || [];
      const byId = new Map((await details(ids)).map((row) => [row.item_id, row]));
      const rows = ids.map((id, k) => ({
        ...(byId.get(id) || { item_id: id, title: id, attributes: {} }),
        score: answer.scores[k],
      }));
      let note = answer.note || null;
      if (note && asked.kind === "popular") note += " (scores are interaction counts)";
      renderResults(asked.heading, note, answer.error || null, rows, asked.kind);
    } catch (error) {
      renderResults(asked.heading, null, String(error.message || error), [], asked.kind);
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  function renderPicks() {
    const list = $("#picks");
    list.replaceChildren();
    for (const row of state.picks) {
      const item = el("li");
      item.append(itemLink(row), el("span", " " + attributesText(row), { class: "attrs" }));
      const remove = el("button", "Remove", { type: "button", "aria-label": "Remove " + row.title });
      remove.addEventListener("click", () => {
        state.picks = state.picks.filter((p) => p.item_id !== row.item_id);
        renderPicks();
        refresh();
      });
      item.append(" ", remove);
      list.append(item);
    }
    $("#picks-empty").hidden = state.picks.length > 0;
    $("#picks-status").textContent = state.picks.length
      ? `${state.picks.length} picked: the recommendations above follow them.`
      : "";
    for (const add of document.querySelectorAll("#search-results button")) {
      add.disabled = state.picks.some((p) => p.item_id === add.dataset.itemId);
    }
  }

  function addPick(row) {
    if (!state.picks.some((p) => p.item_id === row.item_id)) state.picks.push(row);
    state.mode = "history";
    $("#view").value = "subject";
    renderPicks();
    refresh();
  }

  async function search(event) {
    if (event) event.preventDefault();
    const list = $("#search-results");
    const query = $("#search").value;
    if (!query.trim()) {
      list.replaceChildren();
      return;
    }
    try {
      const found = (await getJson("web/search?" + new URLSearchParams({ q: query }))).items;
      list.replaceChildren();
      if (!found.length) list.append(el("li", "No title contains " + JSON.stringify(query) + "."));
      for (const row of found) {
        const item = el("li");
        const add = el("button", "Add", {
          type: "button",
          "aria-label": "Add " + row.title,
          "data-item-id": row.item_id,
        });
        add.disabled = state.picks.some((p) => p.item_id === row.item_id);
        add.addEventListener("click", () => addPick(row));
        item.append(add, " ", el("span", row.title, { class: "title" }),
          el("span", " " + attributesText(row), { class: "attrs" }));
        list.append(item);
      }
    } catch (error) {
      list.replaceChildren(el("li", String(error.message || error), { class: "error" }));
    }
  }

  let typing = null;
  $("#search-form").addEventListener("submit", search);
  $("#search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(search, 250);
  });
  $("#filters").hidden = false;
  $("#filters").addEventListener("change", refresh);
  $("#filters").addEventListener("submit", (event) => event.preventDefault());
  window.mfrecFormatScore = formatScore; // for the browser tests
})();
