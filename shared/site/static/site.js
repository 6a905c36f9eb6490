// The zoo site's two behaviours, in plain JavaScript with no library.
// 1. Sortable tables: click (or press Enter on) a header of a table.sortable to sort its rows by that
//    column, again to reverse. A cell's data-sort value is compared when present (numbers as numbers);
//    empty values ("not measured") stay last either way.
// 2. The framework switch (both / torch / keras) sets <body data-fw>, and site.css hides the other
//    framework's columns and rows (class fw-torch / fw-keras). The choice is remembered across pages.
"use strict";

function sortKey(row, column) {
  const cell = row.cells[column];
  return cell ? (cell.dataset.sort ?? cell.textContent).trim() : "";
}

function compareKeys(a, b) {
  const x = Number(a), y = Number(b);
  if (Number.isFinite(x) && Number.isFinite(y)) return x - y;
  return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
}

function sortTable(table, column, header) {
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  table.querySelectorAll("thead th").forEach((th) => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((r, s) => {
    const a = sortKey(r, column), b = sortKey(s, column);
    if (a === "" || b === "") return (a === "") - (b === "");  // missing values last
    return ascending ? compareKeys(a, b) : compareKeys(b, a);
  });
  body.append(...rows);
}

function setFramework(fw) {
  document.body.dataset.fw = fw;
  document.querySelectorAll("[data-fw-filter] input").forEach((input) => { input.checked = input.value === fw; });
  try { localStorage.setItem("zoo-fw", fw); } catch (err) { /* storage refused: the choice lasts one page */ }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach((table) => {
    table.querySelectorAll("thead th").forEach((header, column) => {
      header.tabIndex = 0;
      header.title = "sort by " + header.textContent;
      header.addEventListener("click", () => sortTable(table, column, header));
      header.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, column, header); }
      });
    });
  });
  document.querySelectorAll("[data-fw-filter] input").forEach((input) => {
    input.addEventListener("change", () => setFramework(input.value));
  });
  let saved = null;
  try { saved = localStorage.getItem("zoo-fw"); } catch (err) { saved = null; }
  if (saved === "torch" || saved === "keras" || saved === "both") setFramework(saved);
});
