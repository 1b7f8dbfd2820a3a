// Positions with their mark price and PnL as the server computes them (`GET /api/positions`,
// `POSITION_UPDATE` events, which the price feed sends as prices move).

import { api } from "../../api.js";
import { clear, el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { applyPositionUpdate, positionsFrom, visiblePositions } from "../../state/positions.js";
import { dataTable, emptyRow, num } from "../table.js";

export function createPositions({ mode }) {
  const body = el("tbody", { id: "positions-body" });
  let positions = new Map();

  function render() {
    const rows = visiblePositions(positions);
    clear(body, rows.length ? rows.map((p) => el("tr", { dataset: { symbol: p.symbol } },
      el("td", {}, p.symbol),
      el("td", { class: "num" }, fmt.qty(p.symbol, p.quantity)),
      el("td", { class: "num" }, fmt.price(p.symbol, p.avg_entry_price)),
      el("td", { class: "num opt" }, p.mark_price === null ? "—" : fmt.price(p.symbol, p.mark_price)),
      el("td", { class: `num upnl ${fmt.signClass(p.unrealized_pnl)}` }, fmt.quote(p.symbol, p.unrealized_pnl)),
      el("td", { class: `num opt ${fmt.signClass(p.realized_pnl)}` }, fmt.quote(p.symbol, p.realized_pnl))))
      : emptyRow(6, "No positions"));
  }

  async function load() {
    positions = positionsFrom(await api("GET", "/api/positions"));
    render();
  }

  function onUpdate(data) {
    if (applyPositionUpdate(positions, data, mode())) render();
  }

  function reset() {
    positions = new Map();
    render();
  }

  render();
  const node = dataTable("positions", "Positions",
    ["Symbol", num("Quantity"), num("Entry"), num("Mark", true), num("Unrealized PnL"), num("Realized PnL", true)], body);
  return { node, load, onUpdate, reset };
}
