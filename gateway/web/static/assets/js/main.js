// Entry point: session bootstrap, header (navigation, mode switch, connection indicator), client-side routing.

import { api, ApiError, hasRefreshToken, isLoggedIn, logout, onAuthChange, publicApi, refresh } from "./api.js";
import { $, clear, el, toast } from "./dom.js";
import { allMarkets, setMarkets } from "./fmt.js";
import { live } from "./live.js";
import { mountLogin, mountRegister } from "./views/auth.js";
import { mountTrade } from "./views/trade.js";
import { mountAccount } from "./views/account.js";
import { mountAdmin } from "./views/admin.js";

const POLL_MS = 2500;

export const app = {
  me: null,
  meListeners: new Set(),
  onMe(fn) { this.meListeners.add(fn); return () => this.meListeners.delete(fn); },
  setMe(me) {
    this.me = me;
    renderHeader();
    for (const fn of this.meListeners) fn(me);
  },
  navigate,
};

let cleanup = null;
const pollers = new Set();

function ctxFor() {
  const owned = [];
  return {
    app,
    live,
    poll(fn) { pollers.add(fn); owned.push(() => pollers.delete(fn)); },
    own(off) { owned.push(off); },
    dispose() { owned.splice(0).forEach((off) => off()); },
  };
}

function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

async function loadMarkets() {
  try { setMarkets(await publicApi("GET", "/api/markets")); } catch { setMarkets([]); }
}

async function loadMe() {
  try {
    app.setMe(await api("GET", "/api/me"));
  } catch (exc) {
    app.setMe(null);
    if (!(exc instanceof ApiError) || exc.status !== 401) toast(`Could not load your profile: ${exc.message}`, "error");
  }
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const main = $("#main");
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const loggedIn = isLoggedIn();
  const firstSymbol = allMarkets()[0]?.symbol || "BTCUSDT";
  if (path === "/login" || path === "/register") {
    if (loggedIn && app.me) return navigate(`/trade/${firstSymbol}`, { replace: true });
  } else if (!loggedIn) {
    return navigate("/login", { replace: true });
  }
  if (loggedIn && !app.me) await loadMe();
  if (loggedIn && !app.me && !isLoggedIn()) return navigate("/login", { replace: true });
  if (loggedIn) live.start();

  const ctx = ctxFor();
  let match;
  if (path === "/") return navigate(`/trade/${firstSymbol}`, { replace: true });
  else if (path === "/login") mountLogin(main, ctx);
  else if (path === "/register") mountRegister(main, ctx);
  else if ((match = path.match(/^\/trade\/([A-Za-z0-9]{2,20})$/))) mountTrade(main, ctx, match[1].toUpperCase());
  else if (path === "/account") mountAccount(main, ctx);
  else if (path === "/admin") mountAdmin(main, ctx);
  else {
    clear(main, el("section", { class: "panel narrow" }, el("h1", {}, "Not found"),
      el("p", {}, "There is no page here. "), el("a", { href: "/", "data-link": true }, "Go to trading")));
  }
  cleanup = () => ctx.dispose();
  renderHeader();
}

function renderHeader() {
  const me = app.me;
  const mode = me?.mode || null;
  document.body.classList.toggle("mode-testnet", mode === "testnet");
  document.body.classList.toggle("mode-paper", mode === "paper");
  document.body.classList.toggle("mode-none", !mode);
  const band = $("#mode-band");
  if (mode) {
    band.hidden = false;
    band.dataset.mode = mode;
    clear(band, mode === "testnet"
      ? [el("strong", {}, "TESTNET"), " — orders go to the Binance spot testnet"]
      : [el("strong", {}, "PAPER"), " — simulated trading on the TradeBridge paper exchange"]);
  } else {
    band.hidden = true;
  }

  const path = location.pathname;
  const link = (href, label, active) =>
    el("a", { href, "data-link": true, "aria-current": active ? "page" : false }, label);
  const firstSymbol = allMarkets()[0]?.symbol || "BTCUSDT";
  clear($("#nav"), me ? [
    link(path.startsWith("/trade") ? path : `/trade/${firstSymbol}`, "Trade", path.startsWith("/trade")),
    link("/account", "Account", path === "/account"),
    me.role === "admin" ? link("/admin", "Admin", path === "/admin") : null,
  ] : [link("/login", "Log in", path === "/login"), link("/register", "Register", path === "/register")]);

  const session = $("#session");
  if (!me) { clear(session); return; }
  const switcher = el("fieldset", { class: "mode-switch", id: "mode-switch" },
    el("legend", { class: "sr-only" }, "Trading mode"),
    ...["paper", "testnet"].map((m) => el("label", { class: `mode-opt mode-opt-${m}` },
      el("input", {
        type: "radio", name: "mode", value: m, checked: mode === m,
        onchange: () => switchMode(m),
      }),
      m === "paper" ? "Paper" : "Testnet")));
  clear(session,
    switcher,
    el("span", { class: "who", title: me.email }, me.email),
    el("button", { type: "button", class: "btn btn-ghost", id: "logout", onclick: doLogout }, "Log out"));
}

async function switchMode(mode) {
  try {
    app.setMe(await api("PUT", "/api/me/mode", { mode }));
    toast(mode === "testnet" ? "Switched to TESTNET" : "Switched to PAPER", "info");
  } catch (exc) {
    renderHeader();
    if (exc.status === 409) {
      toast("Save your Binance testnet keys on the Account page before switching to testnet.", "error");
    } else {
      toast(`Could not switch mode: ${exc.message}`, "error");
    }
  }
}

async function doLogout() {
  live.stop();
  try { await logout(); } catch { /* tokens are dropped anyway */ }
  app.setMe(null);
  navigate("/login");
}

function setConn(status) {
  const node = $("#conn");
  const labels = {
    live: "live", connecting: "connecting…", reconnecting: "reconnecting…", polling: "polling", offline: "offline",
  };
  node.className = `conn conn-${status}`;
  node.dataset.status = status;
  node.title = status === "polling"
    ? "Live updates unavailable: refreshing over REST every few seconds"
    : `Live connection: ${labels[status]}`;
  clear(node, el("span", { class: "dot", "aria-hidden": "true" }), el("span", { class: "conn-label" }, labels[status] || status));
}

function startPolling() {
  setInterval(() => {
    if (live.isLive || !app.me || document.hidden) return;
    for (const fn of pollers) Promise.resolve().then(fn).catch(() => {});
  }, POLL_MS);
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);
onAuthChange((loggedIn) => {
  if (!loggedIn) {
    live.stop();
    app.me = null;
    renderHeader();
    if (!["/login", "/register"].includes(location.pathname)) navigate("/login", { replace: true });
  }
});
live.onStatus(setConn);
live.on("RESYNC_REQUIRED", () => { for (const fn of pollers) Promise.resolve().then(fn).catch(() => {}); });

(async function boot() {
  await loadMarkets();
  if (hasRefreshToken()) {
    try { await refresh(); } catch { /* expired: the router sends us to the login page */ }
  }
  startPolling();
  await route();
})();
