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
    var wanted = {};
    boxes.forEach(function (box) { if (box.checked) { wanted[box.value] = true; } });
    var count = 0;
    all().forEach(function (card) {
      var risk = code ? riskIn(card, code) : card.getAttribute("data-risk");
      var ok = risk !== null && wanted[risk] === true &&
        (!query || searchText(card).indexOf(query) !== -1);
      if (card.hidden === ok) { card.hidden = !ok; }
      if (ok) { count += 1; }
    });
    shown.textContent = String(count);
    var empty = document.getElementById("empty");
    if (empty) { empty.hidden = count > 0; }
    filtered = true;
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
  }

  if (parsing) {
    document.addEventListener("DOMContentLoaded", function () {
      parsing = false;
      if (sorted) { reorder(); }
      if (filtered) { apply(); }
    });
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
  sort.addEventListener("change", reorder);
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
