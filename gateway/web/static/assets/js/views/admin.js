// Admin: reconciliation reports (run one, list, open one with its mismatch table, download as CSV).

import { api, download } from "../api.js";
import { clear, el, toast } from "../dom.js";
import * as fmt from "../fmt.js";

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function mountAdmin(main, ctx) {
  if (ctx.app.me?.role !== "admin") {
    clear(main, el("section", { class: "panel narrow" }, el("h1", {}, "Admins only"),
      el("p", {}, "This page needs the admin role.")));
    return;
  }
  const listBody = el("tbody", { id: "reports-body" });
  const detail = el("section", { class: "panel", id: "report-detail", "aria-labelledby": "report-h", tabindex: "-1" },
    el("h2", { id: "report-h" }, "Report"), el("p", { class: "muted" }, "Select a report."));
  const runButton = el("button", { type: "button", class: "btn btn-primary", id: "run-reconciliation" }, "Run reconciliation now");
  let selected = null;
  let reports = [];
  let poller = null;

  runButton.addEventListener("click", async () => {
    runButton.disabled = true;
    try {
      const { report_id: reportId } = await api("POST", "/api/admin/reconciliation");
      toast(`Reconciliation ${reportId} started`, "info");
      selected = reportId;
      await loadList();
      await openReport(reportId);
    } catch (exc) {
      toast(`Could not start: ${exc.message}`, "error");
    } finally {
      runButton.disabled = false;
    }
  });

  async function loadList() {
    try {
      reports = await api("GET", "/api/admin/reconciliation");
    } catch (exc) {
      clear(listBody, el("tr", { class: "empty" }, el("td", { colSpan: 5 }, `Could not load reports: ${exc.message}`)));
      return;
    }
    clear(listBody, reports.length ? reports.map((r) => el("tr", { dataset: { reportId: r.id, status: r.status }, class: r.id === selected ? "selected" : "" },
      el("td", { class: "mono" }, r.id),
      el("td", {}, fmt.dateTime(r.started_at)),
      el("td", {}, r.status),
      el("td", { class: "num" }, cell(r.mismatch_count)),
      el("td", {}, el("button", {
        type: "button", class: "btn btn-small", "aria-label": `Open report ${r.id}`, onclick: () => openReport(r.id),
      }, "Open")))) : el("tr", { class: "empty" }, el("td", { colSpan: 5 }, "No reports yet")));
  }

  async function openReport(reportId) {
    selected = reportId;
    clearTimeout(poller);
    let report;
    try {
      report = await api("GET", `/api/admin/reconciliation/${encodeURIComponent(reportId)}`);
    } catch (exc) {
      toast(`Could not open report: ${exc.message}`, "error");
      return;
    }
    const rows = report.mismatches;
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
    const summary = Object.entries(report).filter(([, v]) => v === null || typeof v !== "object");
    clear(detail,
      el("h2", { id: "report-h" }, `Report ${reportId}`),
      el("dl", { class: "kv" }, summary.map(([k, v]) => [el("dt", {}, k.replaceAll("_", " ")), el("dd", {}, cell(v))])),
      el("div", { class: "row" },
        el("button", {
          type: "button", class: "btn", id: "download-csv",
          onclick: () => download(`/api/admin/reconciliation/${encodeURIComponent(reportId)}?format=csv`, `reconciliation-${reportId}.csv`)
            .catch((exc) => toast(`Download failed: ${exc.message}`, "error")),
        }, "Download CSV")),
      el("h3", {}, `Mismatches (${rows.length})`),
      rows.length ? el("div", { class: "table-wrap" }, el("table", { class: "data", id: "mismatches" },
        el("caption", { class: "sr-only" }, "Mismatches"),
        el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c.replaceAll("_", " "))))),
        el("tbody", {}, rows.map((r) => el("tr", { class: "mismatch" }, columns.map((c) => el("td", {}, cell(r[c])))))))) :
        el("p", { class: "muted", id: "no-mismatches" }, "No mismatches: the books agree."));
    detail.focus();
    for (const tr of listBody.querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.reportId === String(reportId));
    if (report.status === "running") {
      poller = setTimeout(() => { if (selected === reportId) openReport(reportId); }, 1500);
    } else if (listBody.querySelector(`tr[data-report-id="${CSS.escape(reportId)}"]`)?.dataset.status !== report.status) {
      loadList(); // the list was loaded while this report ran
    }
  }

  clear(main, el("div", { class: "admin-grid" },
    el("section", { class: "panel", "aria-labelledby": "recon-h" },
      el("h1", { id: "recon-h" }, "Reconciliation"),
      el("p", { class: "muted small" }, "Compares TradeBridge's books with the exchange and with the ledger invariants."),
      runButton,
      el("div", { class: "table-wrap" }, el("table", { class: "data", id: "reports" },
        el("caption", { class: "sr-only" }, "Reconciliation reports"),
        el("thead", {}, el("tr", {}, ["Report", "Started", "Status", "Mismatches", ""].map((h) => el("th", { scope: "col" }, h)))),
        listBody))),
    detail));
  ctx.own(() => clearTimeout(poller));
  loadList();
}
