// kale ui: sortable tables and "compare selected"; nothing is loaded from elsewhere.
(function () {
  "use strict";
  function sortValue(cell) {
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    var number = parseFloat(raw);
    return { raw: raw, number: raw !== "" && !isNaN(number) && isFinite(raw) ? number : null };
  }
  function compare(a, b) {
    if (a.number !== null && b.number !== null) { return a.number - b.number; }
    if (a.raw === "") { return 1; }
    if (b.raw === "") { return -1; }
    return a.raw < b.raw ? -1 : a.raw > b.raw ? 1 : 0;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.querySelectorAll("thead th");
    headers.forEach(function (header, column) {
      if (header.getAttribute("data-type") === "none") { return; }
      header.addEventListener("click", function () {
        var ascending = !header.classList.contains("asc");
        headers.forEach(function (h) { h.classList.remove("asc", "desc"); });
        header.classList.add(ascending ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (x, y) {
          var order = compare(sortValue(x.cells[column]), sortValue(y.cells[column]));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var form = document.getElementById("compare");
  if (form) {
    var button = document.getElementById("compare-button");
    var update = function () {
      var ticked = form.querySelectorAll("input[name=run]:checked").length;
      button.disabled = ticked < 2;
      button.textContent = ticked ? "compare " + ticked + " selected" : "compare selected";
    };
    form.addEventListener("change", update);
    update();
  }
})();
