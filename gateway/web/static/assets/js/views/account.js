// Account: profile, trading mode, the write-only Binance testnet keys form (only the hint ever comes back), and
// the account's pictures and history (views/portfolio.js).

import { api } from "../api.js";
import { clear, el, toast } from "../dom.js";
import { clearErrors, field, formError, showErrors } from "../forms.js";
import * as fmt from "../fmt.js";
import { apiKeysSection } from "./apikeys.js";
import { createPortfolio } from "./portfolio.js";

export function mountAccount(main, ctx) {
  const { app } = ctx;
  const keysBox = el("div", { id: "keys-list" });
  const profile = el("dl", { class: "kv", id: "profile" });

  const submit = el("button", { type: "submit", class: "btn btn-primary", id: "keys-submit" }, "Save testnet keys");
  const form = el("form", { id: "keys-form", class: "stack", novalidate: true, autocomplete: "off" },
    field({ form: "keys", name: "api_key", label: "API key", attrs: { autocomplete: "off", spellcheck: false, required: true } }),
    field({ form: "keys", name: "api_secret", label: "API secret", type: "password", attrs: { autocomplete: "new-password", required: true },
      hint: "Stored encrypted; it is never shown again, not even to you." }),
    formError(),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      const saved = await api("PUT", "/api/keys/binance-testnet", {
        api_key: form.elements.api_key.value.trim(), api_secret: form.elements.api_secret.value.trim(),
      });
      form.reset(); // the secret leaves the page as soon as it is stored
      toast(`Testnet keys saved (${saved.api_key_hint})`, "success");
      await Promise.all([loadKeys(), refreshMe()]);
    } catch (exc) {
      showErrors(form, exc);
    } finally {
      submit.disabled = false;
    }
  });

  async function refreshMe() {
    app.setMe(await api("GET", "/api/me"));
  }

  function renderProfile() {
    const me = app.me;
    if (!me) return;
    clear(profile,
      el("dt", {}, "Email"), el("dd", {}, me.email),
      el("dt", {}, "Role"), el("dd", {}, me.role),
      el("dt", {}, "Mode"), el("dd", { id: "profile-mode" }, me.mode === "testnet" ? "Testnet (Binance spot testnet)" : "Paper"),
      el("dt", {}, "Testnet keys"), el("dd", {}, me.has_testnet_keys ? "stored" : "none"));
  }

  async function loadKeys() {
    try {
      const keys = await api("GET", "/api/keys");
      clear(keysBox, keys.length ? el("ul", { class: "plain" }, keys.map((k) => el("li", { dataset: { exchange: k.exchange } },
        el("span", {}, `${k.exchange}: `), el("code", { class: "key-hint" }, k.api_key_hint),
        el("span", { class: "muted small" }, ` saved ${fmt.dateTime(k.created_at)} `),
        el("button", {
          type: "button", class: "btn btn-small btn-ghost", "aria-label": `Delete ${k.exchange} keys`,
          onclick: async () => {
            try { await api("DELETE", "/api/keys/binance-testnet"); toast("Keys deleted", "info"); } catch (exc) { toast(exc.message, "error"); }
            await Promise.all([loadKeys(), refreshMe()]);
          },
        }, "Delete")))) : el("p", { class: "muted" }, "No keys stored."));
    } catch (exc) {
      clear(keysBox, el("p", { class: "muted" }, `Could not load keys: ${exc.message}`));
    }
  }

  const portfolio = createPortfolio(ctx);
  clear(main, el("div", { class: "account-grid" },
    ...portfolio.nodes,
    el("section", { class: "panel", "aria-labelledby": "profile-h" }, el("h1", { id: "profile-h" }, "Account"), profile,
      el("p", { class: "muted small" }, "Switch between paper and testnet with the mode switch in the header.")),
    el("section", { class: "panel", "aria-labelledby": "keys-h" },
      el("h2", { id: "keys-h" }, "Binance testnet keys"),
      el("p", { class: "muted small" }, "Needed for testnet mode. Create them on testnet.binance.vision."),
      keysBox, form),
    apiKeysSection()));
  ctx.own(app.onMe(renderProfile));
  renderProfile();
  loadKeys();
  portfolio.load();
}
