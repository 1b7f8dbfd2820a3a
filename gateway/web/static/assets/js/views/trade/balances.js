// Balances of the current mode (`GET /api/balances`, `BALANCE_UPDATE` events).

import { api } from "../../api.js";
import { clear, el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { applyBalanceUpdate } from "../../state/balances.js";
import { dataTable, emptyRow, num } from "../table.js";

export function createBalances({ mode }) {
  const body = el("tbody", { id: "balances-body" });
  let balances = [];

  function render() {
    clear(body, balances.length ? balances.map((b) => el("tr", { dataset: { asset: b.asset } },
      el("td", {}, b.asset),
      el("td", { class: "num" }, fmt.assetAmount(b.free)),
      el("td", { class: "num" }, fmt.assetAmount(b.locked)),
      el("td", { class: "num" }, fmt.assetAmount(b.total)))) : emptyRow(4, "No balances"));
  }

  async function load() {
    balances = await api("GET", "/api/balances");
    render();
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
  }

  render();
  const node = dataTable("balances", "Balances", ["Asset", num("Free"), num("Locked"), num("Total")], body);
  return { node, load, onUpdate, reset };
}
