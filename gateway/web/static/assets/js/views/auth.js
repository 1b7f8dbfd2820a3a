// Register and log in.

import { login, register } from "../api.js";
import { clear, el } from "../dom.js";
import { clearErrors, field, formError, showErrors } from "../forms.js";

function authForm(main, ctx, kind) {
  const isLogin = kind === "login";
  const formId = isLogin ? "login" : "register";
  const submit = el("button", { type: "submit", class: "btn btn-primary", id: `${formId}-submit` }, isLogin ? "Log in" : "Create account");
  const form = el("form", { id: `${formId}-form`, class: "stack", novalidate: true },
    field({ form: formId, name: "email", label: "Email", type: "email", attrs: { autocomplete: "email", required: true } }),
    field({
      form: formId, name: "password", label: "Password", type: "password",
      attrs: { autocomplete: isLogin ? "current-password" : "new-password", required: true, minLength: isLogin ? undefined : 8 },
    }),
    formError(),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    submit.disabled = true;
    try {
      if (!isLogin) await register(email, password);
      await login(email, password);
      const me = await (await import("../api.js")).api("GET", "/api/me");
      ctx.app.setMe(me);
      ctx.app.navigate("/");
    } catch (exc) {
      showErrors(form, exc);
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, el("section", { class: "panel narrow auth" },
    el("h1", {}, isLogin ? "Log in" : "Create your account"),
    form,
    el("p", { class: "muted" }, isLogin ? ["New here? ", el("a", { href: "/register", "data-link": true }, "Create an account")]
      : ["Already registered? ", el("a", { href: "/login", "data-link": true }, "Log in")])));
  form.elements.email.focus();
}

export const mountLogin = (main, ctx) => authForm(main, ctx, "login");
export const mountRegister = (main, ctx) => authForm(main, ctx, "register");
