// Admin console: users (search, filters, last login, lock/unlock), reconciliation reports (a chart of mismatches
// per run, each report's mismatches, a mismatch's detail and its repair) and the audit log with filters.
// Every action goes through the admin API, which audits it.

import { api, apiPage, download } from "../api.js";
import { clear, el, toast } from "../dom.js";
import * as fmt from "../fmt.js";
import { dataTable, emptyRow, opt } from "./table.js";

const PAGE = 20;
const CHART_RUNS = 30;

function cell(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, String(v));
  return q.toString();
};

/** Previous/next buttons and "1–20 of 57" for a list paged with offset and the server's total. */
function pager(id, label, onPage) {
  const info = el("span", { class: "muted small", id: `${id}-info`, role: "status" });
  const prev = el("button", { type: "button", class: "btn btn-small", "aria-label": `Previous page of ${label}` }, "Previous");
  const next = el("button", { type: "button", class: "btn btn-small", "aria-label": `Next page of ${label}` }, "Next");
  let state = { offset: 0, total: 0 };
  prev.addEventListener("click", () => onPage(Math.max(0, state.offset - PAGE)));
  next.addEventListener("click", () => onPage(state.offset + PAGE));
  return {
    node: el("div", { class: "row pager", id }, prev, next, info),
    update(offset, shown, total) {
      state = { offset, total };
      prev.disabled = offset === 0;
      next.disabled = offset + shown >= total;
      info.textContent = total ? `${offset + 1}–${offset + shown} of ${total}` : "none";
    },
  };
}

function selectField(id, label, options) {
  return el("div", { class: "field" }, el("label", { for: id }, label),
    el("select", { id, name: id }, options.map(([value, text]) => el("option", { value }, text))));
}

function textField(id, label, attrs = {}) {
  return el("div", { class: "field" }, el("label", { for: id }, label), el("input", { id, name: id, type: "text", ...attrs }));
}

function mountUsers(me) {
  const body = el("tbody", { id: "users-body" });
  let offset = 0;
  let loads = 0; // answers of older loads are dropped
  const pages = pager("users-pager", "users", (o) => { offset = o; load(); });
  const form = el("form", { class: "filters", id: "users-filter", role: "search", "aria-label": "Filter users" },
    textField("users-q", "Search (email or user id)", { autocomplete: "off", maxLength: 320 }),
    selectField("users-role", "Role", [["", "Any role"], ["user", "user"], ["admin", "admin"]]),
    selectField("users-mode", "Mode", [["", "Any mode"], ["paper", "paper"], ["testnet", "testnet"]]),
    selectField("users-status", "Status", [["", "Any status"], ["active", "active"], ["locked", "locked"]]),
    el("button", { type: "submit", class: "btn" }, "Search"));
  form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; load(); });

  async function setLocked(user, locked) {
    try {
      await api("POST", `/api/admin/users/${encodeURIComponent(user.id)}/${locked ? "lock" : "unlock"}`);
      toast(`${user.email} ${locked ? "locked" : "unlocked"}`, "success");
    } catch (exc) {
      toast(`Could not ${locked ? "lock" : "unlock"} ${user.email}: ${exc.message}`, "error");
    }
    await load();
  }

  function row(u) {
    const locked = u.status === "locked";
    const self = u.id === me.id;
    return el("tr", { dataset: { userId: u.id, status: u.status } },
      el("td", { class: "user-email" }, u.email),
      el("td", {}, u.role),
      el("td", { class: "opt" }, u.mode),
      el("td", { class: "opt" }, u.last_login_at ? fmt.dateTime(u.last_login_at) : "never"),
      el("td", {}, el("span", { class: `badge badge-${locked ? "rejected" : "filled"}` }, u.status),
        locked && u.locked_at ? el("span", { class: "muted small" }, ` since ${fmt.dateTime(u.locked_at)}`) : null),
      el("td", {}, self ? el("span", { class: "muted small" }, "you") : el("button", {
        type: "button", class: "btn btn-small", "aria-label": `${locked ? "Unlock" : "Lock"} ${u.email}`,
        onclick: () => setLocked(u, !locked),
      }, locked ? "Unlock" : "Lock")));
  }

  async function load() {
    const q = query({
      q: form.elements["users-q"].value.trim(), role: form.elements["users-role"].value,
      mode: form.elements["users-mode"].value, status: form.elements["users-status"].value, limit: PAGE, offset,
    });
    const seq = ++loads;
    try {
      const { items, total } = await apiPage(`/api/admin/users?${q}`);
      if (seq !== loads) return; // a newer search answered first
      clear(body, items.length ? items.map(row) : emptyRow(6, "No users match."));
      pages.update(offset, items.length, total);
    } catch (exc) {
      if (seq === loads) clear(body, emptyRow(6, `Could not load users: ${exc.message}`));
    }
  }

  load();
  return el("section", { class: "panel admin-wide", id: "users-panel", "aria-labelledby": "users-h" },
    el("h1", { id: "users-h" }, "Users"),
    form,
    dataTable("users", "Users", ["Email", "Role", opt("Mode"), opt("Last login"), "Status", ""], body),
    pages.node);
}

/** Mismatches per run as bars (oldest left), readable without the picture: the label says the figures. */
function mismatchChart(reports) {
  const runs = reports.filter((r) => r.status === "done").slice(0, CHART_RUNS).reverse();
  const most = Math.max(1, ...runs.map((r) => r.mismatch_count));
  const total = runs.reduce((n, r) => n + r.mismatch_count, 0);
  const label = runs.length
    ? `Mismatches per reconciliation run, last ${runs.length} runs: ${total} in all, at most ${most} in one run; latest ${runs.at(-1).mismatch_count}.`
    : "No finished reconciliation runs yet.";
  const kinds = (r) => Object.entries(r.summary?.by_kind || {}).map(([k, n]) => `${k}: ${n}`).join(", ");
  return el("figure", { class: "mismatch-chart", id: "mismatch-chart" },
    el("div", { class: "bars", role: "img", "aria-label": label },
      runs.map((r) => {
        const bar = el("div", {
          class: `bar${r.mismatch_count ? " bar-bad" : ""}`,
          dataset: { reportId: r.id, count: String(r.mismatch_count) },
          title: `${fmt.dateTime(r.started_at)}: ${r.mismatch_count} mismatch(es)${r.mismatch_count ? ` (${kinds(r)})` : ""}`,
        });
        bar.style.height = `${Math.max(2, Math.round((100 * r.mismatch_count) / most))}%`;
        return bar;
      })),
    el("figcaption", { class: "muted small" }, runs.length
      ? [`${fmt.dateTime(runs[0].started_at)} → ${fmt.dateTime(runs.at(-1).started_at)}`, el("span", { class: "sr-only" }, ` ${label}`)]
      : label));
}

function mountReconciliation() {
  const listBody = el("tbody", { id: "reports-body" });
  const chartSlot = el("div", { id: "mismatch-chart-slot" });
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
      reports = await api("GET", `/api/admin/reconciliation?limit=${CHART_RUNS}`);
    } catch (exc) {
      clear(listBody, emptyRow(5, `Could not load reports: ${exc.message}`));
      return;
    }
    clear(chartSlot, mismatchChart(reports));
    clear(listBody, reports.length ? reports.map((r) => el("tr", { dataset: { reportId: r.id, status: r.status }, class: r.id === selected ? "selected" : "" },
      el("td", { class: "mono" }, r.id),
      el("td", {}, fmt.dateTime(r.started_at)),
      el("td", {}, r.status),
      el("td", { class: "num" }, cell(r.mismatch_count)),
      el("td", {}, el("button", {
        type: "button", class: "btn btn-small", "aria-label": `Open report ${r.id}`, onclick: () => openReport(r.id),
      }, "Open")))) : emptyRow(5, "No reports yet"));
  }

  function mismatchDetail(report, m, box) {
    const fields = ["kind", "scope", "user_id", "asset", "symbol", "order_id", "trade_id", "tradebridge_value",
      "reference_value", "reference_source", "action"];
    const repairState = m.repaired_at
      ? el("p", { class: "repaired", id: "mismatch-repaired" }, `Repaired ${fmt.dateTime(m.repaired_at)} by ${m.repaired_by}`)
      : m.repair
        ? el("button", {
          type: "button", class: "btn btn-primary", id: "repair-mismatch",
          onclick: async (event) => {
            event.currentTarget.disabled = true;
            try {
              const out = await api("POST", `/api/admin/reconciliation/${encodeURIComponent(report.id)}/repair`, { mismatch_ids: [m.id] });
              if (out.repaired.includes(m.id)) toast(`Mismatch ${m.id} repaired (${m.repair})`, "success");
              else toast(`Mismatch ${m.id} not repaired: ${out.skipped.map((s) => s.reason).join("; ")}`, "error");
            } catch (exc) {
              toast(`Repair failed: ${exc.message}`, "error");
            }
            await openReport(report.id, m.id);
          },
        }, `Repair: ${m.repair.replaceAll("_", " ")}`)
        : el("p", { class: "muted", id: "mismatch-no-repair" }, "No automatic repair: investigate by hand.");
    clear(box,
      el("h3", { id: "mismatch-h" }, `Mismatch ${m.id}`),
      el("dl", { class: "kv" }, fields.filter((f) => m[f] !== null && m[f] !== "").map((f) =>
        [el("dt", {}, f.replaceAll("_", " ")), el("dd", {}, cell(m[f]))])),
      Object.keys(m.details || {}).length ? [el("h4", {}, "Details"),
        el("dl", { class: "kv", id: "mismatch-details" }, Object.entries(m.details).map(([k, v]) =>
          [el("dt", {}, k.replaceAll("_", " ")), el("dd", { class: "mono" }, cell(v))]))] : null,
      repairState);
    box.hidden = false;
  }

  async function openReport(reportId, mismatchId = null) {
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
    const summary = Object.entries(report).filter(([, v]) => v === null || typeof v !== "object");
    const box = el("div", { id: "mismatch-detail", class: "mismatch-detail", tabindex: "-1", "aria-labelledby": "mismatch-h", role: "region", hidden: true });
    const show = (m) => { mismatchDetail(report, m, box); box.focus(); };
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
      rows.length ? dataTable("mismatches", "Mismatches",
        ["#", "Kind", opt("Scope"), "User", opt("Asset / symbol"), "TradeBridge", "Reference", opt("Source"), "Repair", ""],
        el("tbody", {}, rows.map((m) => el("tr", { class: "mismatch", dataset: { mismatchId: String(m.id), kind: m.kind } },
          el("td", { class: "num" }, String(m.id)),
          el("td", {}, m.kind),
          el("td", { class: "opt" }, m.scope),
          el("td", { class: "mono" }, cell(m.user_id)),
          el("td", { class: "opt" }, cell(m.symbol || m.asset)),
          el("td", {}, cell(m.tradebridge_value)),
          el("td", {}, cell(m.reference_value)),
          el("td", { class: "opt" }, m.reference_source),
          el("td", {}, m.repaired_at ? "repaired" : m.repair ? m.repair.replaceAll("_", " ") : "by hand"),
          el("td", {}, el("button", {
            type: "button", class: "btn btn-small", "aria-label": `Details of mismatch ${m.id}`, onclick: () => show(m),
          }, "Details")))))) :
        el("p", { class: "muted", id: "no-mismatches" }, "No mismatches: the books agree."),
      box);
    const again = rows.find((m) => m.id === mismatchId);
    if (again) mismatchDetail(report, again, box);
    else detail.focus();
    for (const tr of listBody.querySelectorAll("tr")) tr.classList.toggle("selected", tr.dataset.reportId === String(reportId));
    if (report.status === "running") {
      poller = setTimeout(() => { if (selected === reportId) openReport(reportId); }, 1500);
    } else if (listBody.querySelector(`tr[data-report-id="${CSS.escape(reportId)}"]`)?.dataset.status !== report.status) {
      loadList(); // the list was loaded while this report ran
    }
  }

  loadList();
  return {
    stop: () => clearTimeout(poller),
    nodes: [
      el("section", { class: "panel", id: "recon-panel", "aria-labelledby": "recon-h" },
        el("h2", { id: "recon-h" }, "Reconciliation"),
        el("p", { class: "muted small" }, "Compares TradeBridge's books with the exchange and with the ledger invariants."),
        runButton,
        el("h3", {}, "Mismatches per run"),
        chartSlot,
        dataTable("reports", "Reconciliation reports", ["Report", "Started", "Status", "Mismatches", ""], listBody)),
      detail,
    ],
  };
}

function mountAudit() {
  const body = el("tbody", { id: "audit-body" });
  let offset = 0;
  let loads = 0; // answers of older loads are dropped
  const pages = pager("audit-pager", "the audit log", (o) => { offset = o; load(); });
  const form = el("form", { class: "filters", id: "audit-filter", role: "search", "aria-label": "Filter the audit log" },
    textField("audit-actor", "Actor (email or user id)", { autocomplete: "off", maxLength: 320 }),
    textField("audit-action", "Action or prefix", { list: "audit-actions", autocomplete: "off", maxLength: 64 }),
    el("datalist", { id: "audit-actions" },
      ["auth", "auth.login", "auth.login_failed", "auth.refresh_reuse", "admin", "admin.user_lock", "admin.user_unlock",
        "reconciliation", "reconciliation.run", "reconciliation.repair", "user", "user.mode", "apikeys", "keys"]
        .map((a) => el("option", { value: a }))),
    el("div", { class: "field" }, el("label", { for: "audit-since" }, "From"), el("input", { id: "audit-since", name: "audit-since", type: "datetime-local", step: 1 })),
    el("div", { class: "field" }, el("label", { for: "audit-until" }, "Until"), el("input", { id: "audit-until", name: "audit-until", type: "datetime-local", step: 1 })),
    el("button", { type: "submit", class: "btn" }, "Apply"),
    el("p", { class: "form-error", id: "audit-error", role: "alert" }));
  form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; load(); });
  const time = (name) => {
    const value = form.elements[name].value;
    return value ? new Date(value).toISOString() : "";
  };

  async function load() {
    form.querySelector("#audit-error").textContent = "";
    const q = query({
      actor: form.elements["audit-actor"].value.trim(), action: form.elements["audit-action"].value.trim(),
      since: time("audit-since"), until: time("audit-until"), limit: PAGE, offset,
    });
    const seq = ++loads;
    try {
      const { items, total } = await apiPage(`/api/admin/audit?${q}`);
      if (seq !== loads) return; // a newer filter answered first
      clear(body, items.length ? items.map((e) => el("tr", { dataset: { action: e.action } },
        el("td", {}, fmt.dateTime(e.ts)),
        el("td", { class: "mono" }, e.actor_email || e.actor_id || "—"),
        el("td", {}, e.action),
        el("td", { class: "mono opt" }, cell(e.target)),
        el("td", { class: "opt" }, cell(e.ip)),
        el("td", { class: "audit-details mono opt", title: cell(e.details) }, cell(e.details)))) : emptyRow(6, "No entries match."));
      pages.update(offset, items.length, total);
    } catch (exc) {
      if (seq !== loads) return;
      form.querySelector("#audit-error").textContent = exc.message;
      clear(body, emptyRow(6, "Could not load the audit log."));
    }
  }

  load();
  return el("section", { class: "panel admin-wide", id: "audit-panel", "aria-labelledby": "audit-h" },
    el("h2", { id: "audit-h" }, "Audit log"),
    form,
    dataTable("audit", "Audit log", ["Time", "Actor", "Action", opt("Target"), opt("IP"), opt("Details")], body),
    pages.node);
}

/** The console's own stylesheet, added once, so the trading pages' first load does not carry it. */
function adminStyles() {
  if (document.getElementById("admin-css")) return;
  document.head.append(el("link", { rel: "stylesheet", href: "/assets/admin.css", id: "admin-css" }));
}

export function mountAdmin(main, ctx) {
  const me = ctx.app.me;
  if (me?.role !== "admin") {
    clear(main, el("section", { class: "panel narrow" }, el("h1", {}, "Admins only"),
      el("p", {}, "This page needs the admin role.")));
    return;
  }
  adminStyles();
  const recon = mountReconciliation();
  clear(main, el("div", { class: "admin-grid" }, mountUsers(me), ...recon.nodes, mountAudit()));
  ctx.own(recon.stop);
}
