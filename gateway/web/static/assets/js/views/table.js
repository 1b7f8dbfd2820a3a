// Data tables: a caption for screen readers, numeric columns right-aligned, optional columns that hide on
// narrow screens, and a one-cell row for "nothing here".

import { el } from "../dom.js";

/** A numeric column header (`opt`: hidden below 600 px). */
export const num = (label, opt = false) => ({ label, num: true, opt });
/** An optional column header (hidden below 600 px). */
export const opt = (label) => ({ label, opt: true });

export function dataTable(id, caption, headers, body) {
  const th = (h) => el("th", { scope: "col", class: [h.num ? "num" : "", h.opt ? "opt" : ""].join(" ").trim() }, h.label ?? h);
  // The wrapper scrolls sideways on a narrow screen: focusable and named, so it scrolls by keyboard too.
  return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    el("table", { id, class: "data" },
      el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, headers.map(th))),
      body));
}

export function emptyRow(cols, text) {
  return el("tr", { class: "empty" }, el("td", { colSpan: cols }, text));
}

export function statusBadge(status) {
  return el("span", { class: `badge badge-${status.toLowerCase()}` }, status);
}
