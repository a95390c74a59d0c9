(function () {
  "use strict";
  // This script sits right after the toolbar, so the filters work while the cards are
  // still being parsed: they act on the cards parsed so far, and once the document is
  // complete, whatever was chosen meanwhile is applied to every card. Nothing runs per
  // row at load: cards are read on the first filter or sort.
  var search = document.getElementById("search");
  var country = document.getElementById("country");
  var sort = document.getElementById("sort");
  var shown = document.getElementById("shown");
  var fresh = document.getElementById("new");
  var live = document.getElementById("live");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=risk]"));
  var cards = null;
  var timer = 0;
  var filtered = false;
  var sorted = false;
  var parsing = document.readyState === "loading";

  function list() { return document.getElementById("cards"); }

  function all() {
    if (cards === null) {
      var found = list();
      var now = found ? Array.prototype.slice.call(found.querySelectorAll("article.card")) : [];
      if (parsing) { return now; }  // more cards are on the way: do not keep this list
      cards = now;
    }
    return cards;
  }

  function riskIn(card, code) {
    if (!card._cr) {
      var map = {};
      (card.getAttribute("data-cr") || "").split(" ").forEach(function (pair) {
        var at = pair.lastIndexOf(":");
        if (at > 0) { map[pair.slice(0, at)] = pair.slice(at + 1); }
      });
      card._cr = map;
    }
    return Object.prototype.hasOwnProperty.call(card._cr, code) ? card._cr[code] : null;
  }

  var RANK = { high: 0, medium: 1, low: 2, none: 3, pending: 4, unknown: 5, failed: 6, invalid: 7 };

  function searchText(card) {
    if (card._q === undefined) {
      var title = card.querySelector(".title");
      card._q = ((card.getAttribute("data-key") || "") + " " +
        (title ? title.textContent : "")).toLowerCase();
    }
    return card._q;
  }

  function apply() {
    var query = search.value.trim().toLowerCase();
    var code = country.value;
    var onlyNew = fresh !== null && fresh.checked;
    var onlyLive = live !== null && live.checked;
    var wanted = {};
    boxes.forEach(function (box) { if (box.checked) { wanted[box.value] = true; } });
    var count = 0;
    var total = 0;
    document.body.classList.toggle("live-only", onlyLive);
    all().forEach(function (card) {
      var risk = code ? riskIn(card, code) :
        card.getAttribute(onlyLive ? "data-live-risk" : "data-risk");
      var ok = risk !== null && wanted[risk] === true &&
        (!onlyNew || Number(card.getAttribute("data-new-matches")) > 0) &&
        (!query || searchText(card).indexOf(query) !== -1);
      if (card.hidden === ok) { card.hidden = !ok; }
      if (ok) { count += 1; }
      total += 1;
    });
    shown.textContent = String(count);
    var empty = document.getElementById("empty");
    if (empty) { empty.hidden = count > 0; }
    // Print: the summary table, plus the analyses of the rows on screen once filtered.
    document.body.classList.toggle("filtered", count < total);
    filtered = true;
    save();
  }

  // The filter, search and sort state lives in the URL's hash, so a reload or a shared
  // link shows the same rows: #risk=high,medium&country=EU&q=lamp&sort=key&new=1&live=1
  function save() {
    if (restoring || !window.history || !history.replaceState) { return; }
    var parts = [];
    var risks = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    if (risks.length !== boxes.length) { parts.push("risk=" + risks.join(",")); }
    if (country.value) { parts.push("country=" + encodeURIComponent(country.value)); }
    if (search.value.trim()) { parts.push("q=" + encodeURIComponent(search.value.trim())); }
    if (sort.value !== "risk") { parts.push("sort=" + encodeURIComponent(sort.value)); }
    if (fresh !== null && fresh.checked) { parts.push("new=1"); }
    if (live !== null && live.checked) { parts.push("live=1"); }
    var hash = parts.length ? "#" + parts.join("&") : "";
    if (hash !== location.hash) {
      history.replaceState(null, "", location.pathname + location.search + hash);
    }
  }

  var restoring = false;
  function restore() {
    var state = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
      var at = pair.indexOf("=");
      if (at > 0) {
        try { state[pair.slice(0, at)] = decodeURIComponent(pair.slice(at + 1)); } catch (e) { /* bad escape: ignored */ }
      }
    });
    if (!Object.keys(state).length) { return false; }
    restoring = true;
    if (state.risk !== undefined) {
      var keep = state.risk.split(",");
      boxes.forEach(function (b) { b.checked = keep.indexOf(b.value) !== -1; });
    }
    if (state.country !== undefined) {
      var known = Array.prototype.some.call(country.options, function (o) { return o.value === state.country; });
      if (known) { country.value = state.country; }
    }
    if (state.q !== undefined) { search.value = state.q; }
    if (state.sort !== undefined && Array.prototype.some.call(sort.options,
        function (o) { return o.value === state.sort; })) { sort.value = state.sort; }
    if (fresh !== null) { fresh.checked = state["new"] === "1"; }
    if (live !== null) { live.checked = state.live === "1"; }
    restoring = false;
    return true;
  }

  function reorder() {
    var how = sort.value;
    var into = list();
    sorted = true;
    if (!into) { return; }
    var items = all().slice();
    function num(card, name) { return Number(card.getAttribute(name)) || 0; }
    items.sort(function (a, b) {
      if (how === "key") {
        return a.getAttribute("data-key").localeCompare(b.getAttribute("data-key"),
          undefined, { numeric: true });
      }
      if (how === "risk") {
        var d = RANK[a.getAttribute("data-risk")] - RANK[b.getAttribute("data-risk")];
        if (d !== 0) { return d; }
      }
      return num(a, "data-seq") - num(b, "data-seq");
    });
    var frag = document.createDocumentFragment();
    items.forEach(function (card) { frag.appendChild(card); });
    into.appendChild(frag);
    if (how !== "key") { group(); }
  }

  // A row whose image and matches equal an earlier row's (data-same names it) follows it.
  function group() {
    var into = list();
    var same = into ? into.querySelectorAll("article.card[data-same]") : [];
    if (!same.length) { return; }  // the usual case: nothing is read
    var byKey = {};
    var last = {};
    all().forEach(function (card) { byKey[card.getAttribute("data-key")] = card; });
    Array.prototype.forEach.call(same, function (card) {
      var lead = card.getAttribute("data-same");
      var after = last[lead] || byKey[lead];
      if (after && after !== card) { after.insertAdjacentElement("afterend", card); last[lead] = card; }
    });
  }

  if (parsing) {
    document.addEventListener("DOMContentLoaded", function () {
      parsing = false;
      if (sorted) { reorder(); } else { group(); }
      if (filtered) { apply(); }
    });
  }
  if (!parsing) { group(); }
  if (restore()) {
    if (sort.value !== "risk") { reorder(); }
    apply();
  }

  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(apply, 120);
  });
  search.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { clearTimeout(timer); apply(); }
  });
  country.addEventListener("change", apply);
  boxes.forEach(function (box) { box.addEventListener("change", apply); });
  sort.addEventListener("change", function () { reorder(); save(); });
  if (fresh !== null) { fresh.addEventListener("change", apply); }
  if (live !== null) { live.addEventListener("change", apply); }
  Array.prototype.forEach.call(document.querySelectorAll("button[data-only]"), function (btn) {
    btn.addEventListener("click", function () {
      var only = btn.getAttribute("data-only");
      boxes.forEach(function (box) { box.checked = box.value === only; });
      apply();
      var into = list();
      if (into) { into.scrollIntoView({ behavior: "smooth", block: "start" }); }
    });
  });
  // A product or patent image that does not load shows its "no image" placeholder.
  document.addEventListener("error", function (event) {
    var el = event.target;
    if (el && el.tagName === "IMG") { el.classList.add("broken"); }
  }, true);
  // Print every analysis, then fold them back.
  var opened = [];
  window.addEventListener("beforeprint", function () {
    opened = Array.prototype.filter.call(document.querySelectorAll("details:not([open])"),
      function (d) { d.open = true; return true; });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });
  // When the filters began to work (benchmarks/report.py reads it).
  if (window.performance && performance.mark) { performance.mark("fto-filters-ready"); }
}());
