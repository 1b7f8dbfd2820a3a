// ESLint (flat config) for the web app's plain ES modules and their unit tests: `npm run lint`.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/"] },
  js.configs.recommended,
  {
    files: ["**/*.js"],
    languageOptions: { ecmaVersion: 2024, sourceType: "module" },
    rules: {
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "none" }],
    },
  },
  {
    files: ["static/**/*.js"],
    languageOptions: { globals: globals.browser },
    rules: {
      // The refresh token lives in this tab's sessionStorage only (README: tokens); nothing in localStorage.
      "no-restricted-globals": ["error", { name: "localStorage", message: "tokens never go to localStorage" }],
      // The DOM is built with properties and text nodes (dom.js): data from the API never becomes markup.
      "no-restricted-syntax": [
        "error",
        { selector: "MemberExpression[property.name=/^(innerHTML|outerHTML)$/]", message: "build nodes with dom.js el()" },
        { selector: "CallExpression[callee.property.name=/^(insertAdjacentHTML|write|writeln)$/]", message: "build nodes with dom.js el()" },
        { selector: "CallExpression[callee.name=/^(parseFloat|eval)$/]", message: "amounts are decimal strings: use decimal.js" },
      ],
    },
  },
  {
    files: ["test/**/*.js", "eslint.config.js"],
    languageOptions: { globals: globals.node },
  },
];
