// Account → API keys: keys TradeBridge issues for its Binance-compatible API (/binance/api/v3). The secret is
// shown once, right after creation, and leaves the page when the user dismisses it.

import { api } from "../api.js";
import { clear, el, toast } from "../dom.js";
import { clearErrors, field, formError, showErrors } from "../forms.js";
import * as fmt from "../fmt.js";
import { describeKey, keyRequest } from "../state/apikeys.js";

export function apiKeysSection() {
  const list = el("div", { id: "apikeys-list" });
  const reveal = el("div", { id: "apikeys-reveal", "aria-live": "polite" });
  const read = el("input", { type: "checkbox", checked: true });
  const trade = el("input", { type: "checkbox", checked: true });
  const submit = el("button", { type: "submit", class: "btn btn-primary", id: "apikeys-submit" }, "Create API key");
  const form = el("form", { id: "apikeys-form", class: "stack", novalidate: true, autocomplete: "off" },
    field({ form: "apikeys", name: "label", label: "Label", attrs: { maxlength: 64, spellcheck: false } }),
    el("fieldset", { class: "field", dataset: { field: "scopes" } },
      el("legend", {}, "Permissions"),
      field({ form: "apikeys", name: "read", label: "Read", control: read }),
      field({ form: "apikeys", name: "trade", label: "Trade", control: trade })),
    field({ form: "apikeys", name: "ip_allowlist", label: "IP allow-list", attrs: { spellcheck: false },
      hint: "Optional: addresses or networks, comma-separated (e.g. 203.0.113.7, 10.0.0.0/8)." }),
    formError(),
    submit);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    submit.disabled = true;
    try {
      const made = await api("POST", "/api/api-keys", keyRequest({
        label: form.elements.label.value, read: read.checked, trade: trade.checked, ips: form.elements.ip_allowlist.value,
      }));
      form.reset();
      showOnce(made);
      await load();
    } catch (exc) {
      showErrors(form, exc);
    } finally {
      submit.disabled = false;
    }
  });

  function showOnce(made) {
    clear(reveal, el("div", { class: "panel notice", role: "status" },
      el("p", {}, "Copy the secret now: it is not shown again."),
      el("dl", { class: "kv" },
        el("dt", {}, "API key"), el("dd", {}, el("code", { id: "apikeys-new-key" }, made.api_key)),
        el("dt", {}, "Secret"), el("dd", {}, el("code", { id: "apikeys-new-secret" }, made.secret))),
      el("button", { type: "button", class: "btn btn-small", onclick: () => clear(reveal) }, "Done")));
  }

  async function load() {
    try {
      const keys = await api("GET", "/api/api-keys");
      clear(list, keys.length ? el("ul", { class: "plain" }, keys.map((k) => el("li", { dataset: { key: k.id } },
        el("code", { class: "key-hint" }, describeKey(k)),
        el("span", { class: "muted small" }, ` created ${fmt.dateTime(k.created_at)} `),
        el("button", {
          type: "button", class: "btn btn-small btn-ghost", "aria-label": `Revoke API key ${k.api_key_hint}`,
          onclick: async () => {
            try { await api("DELETE", `/api/api-keys/${encodeURIComponent(k.id)}`); toast("API key revoked", "info"); } catch (exc) { toast(exc.message, "error"); }
            await load();
          },
        }, "Revoke")))) : el("p", { class: "muted" }, "No API keys."));
    } catch (exc) {
      clear(list, el("p", { class: "muted" }, `Could not load API keys: ${exc.message}`));
    }
  }

  load();
  return el("section", { class: "panel", "aria-labelledby": "apikeys-h" },
    el("h2", { id: "apikeys-h" }, "API keys"),
    el("p", { class: "muted small" },
      "For bots using a Binance client: point it at /binance/api/v3 with these keys to trade your paper account (see docs/binance-api.md)."),
    list, reveal, form);
}
