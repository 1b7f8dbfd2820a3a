// Balances of the current mode (`GET /api/balances?mode=`, `BALANCE_UPDATE` events of that mode). In testnet
// mode, when Binance cannot be reached, no numbers are shown (never another mode's, never stale ones): a banner
// says so and when it was last reached (`GET /api/venue-status`).

import { api } from "../../api.js";
import { clear, el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { applyBalanceUpdate, balancesPath, venueBanner } from "../../state/balances.js";
import { dataTable, emptyRow, num } from "../table.js";

export function createBalances({ mode }) {
  const body = el("tbody", { id: "balances-body" });
  const banner = el("p", { id: "venue-banner", class: "venue-banner", role: "alert", hidden: true });
  let balances = [];

  function render() {
    clear(body, balances.length ? balances.map((b) => el("tr", { dataset: { asset: b.asset } },
      el("td", {}, b.asset),
      el("td", { class: "num" }, fmt.assetAmount(b.free)),
      el("td", { class: "num" }, fmt.assetAmount(b.locked)),
      el("td", { class: "num" }, fmt.assetAmount(b.total)))) : emptyRow(4, "No balances"));
  }

  function showBanner(text) {
    banner.hidden = !text;
    clear(banner, text || "");
  }

  async function showVenueStatus(m) {
    try {
      const status = await api("GET", `/api/venue-status?mode=${encodeURIComponent(m)}`);
      if (mode() === m) showBanner(venueBanner(status));
    } catch {
      if (mode() === m) showBanner("Binance testnet unreachable — status unknown");
    }
  }

  async function load() {
    const m = mode();
    if (!m) return;
    let rows;
    try {
      rows = await api("GET", balancesPath(m));
    } catch (exc) {
      if (mode() !== m) return;
      balances = [];
      render();
      if (m === "testnet" && exc.status === 503) {
        await showVenueStatus(m);
        return;
      }
      throw exc;
    }
    if (mode() !== m) return; // the user switched meanwhile: these are the other mode's
    balances = rows;
    render();
    showBanner(null);
  }

  function onUpdate(data) {
    const next = applyBalanceUpdate(balances, data, mode());
    if (next === null) return;
    balances = next;
    render();
  }

  function reset() {
    balances = [];
    render();
    showBanner(null);
  }

  render();
  const table = dataTable("balances", "Balances", ["Asset", num("Free"), num("Locked"), num("Total")], body);
  return { node: el("div", { class: "balances" }, banner, table), load, onUpdate, reset };
}
