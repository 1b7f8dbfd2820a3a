// Labelled fields with an error slot each; problem+json `errors[].field` land next to their field.

import { el } from "./dom.js";

export function field({ form, name, label, type = "text", attrs = {}, control = null, hint = null }) {
  const id = `${form}-${name}`;
  const errorId = `${id}-error`;
  const input = control || el("input", { id, name, type, ...attrs });
  input.id = id;
  input.name = name;
  input.setAttribute("aria-describedby", errorId + (hint ? ` ${id}-hint` : ""));
  return el("div", { class: "field", dataset: { field: name } },
    el("label", { for: id }, label),
    input,
    hint ? el("small", { class: "hint", id: `${id}-hint` }, hint) : null,
    el("div", { class: "field-error", id: errorId, role: "alert", "aria-live": "polite" }));
}

export function clearErrors(formNode) {
  formNode.querySelectorAll(".field-error").forEach((n) => { n.textContent = ""; });
  formNode.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  const general = formNode.querySelector(".form-error");
  if (general) general.textContent = "";
}

export function setFieldError(formNode, name, message) {
  const wrap = formNode.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
  if (!wrap) return false;
  wrap.querySelector(".field-error").textContent = message;
  wrap.querySelector("input, select, textarea")?.setAttribute("aria-invalid", "true");
  return true;
}

/** Show an ApiError on a form: per-field messages where the field exists, the rest as a form error. */
export function showErrors(formNode, exc) {
  clearErrors(formNode);
  const leftovers = [];
  let first = null;
  for (const err of exc.fieldErrors || []) {
    const name = String(err.field || "").split(".").pop();
    if (name && setFieldError(formNode, name, err.message || "invalid")) {
      first = first || formNode.querySelector(`.field[data-field="${CSS.escape(name)}"] input, .field[data-field="${CSS.escape(name)}"] select`);
    } else {
      leftovers.push(err.message);
    }
  }
  const general = formNode.querySelector(".form-error");
  const text = leftovers.length ? leftovers.join("; ") : first ? "" : exc.message;
  if (general && text) general.textContent = exc.status === 429 && exc.retryAfter ? `${text} (retry in ${exc.retryAfter}s)` : text;
  first?.focus();
}

export function formError() {
  return el("div", { class: "form-error", role: "alert", "aria-live": "assertive" });
}
