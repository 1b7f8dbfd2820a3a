// REST client for the public contract. The access token lives only in memory; the refresh token is kept
// in sessionStorage (this tab only, gone when it closes) so a reload does not log the user out.
// See gateway/web/README.md for the XSS/CSRF trade-off.

const REFRESH_KEY = "tradebridge.refresh_token";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

let accessToken = null;
let refreshTimer = null;
let refreshing = null;
const authListeners = new Set();

export function onAuthChange(fn) {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

function emitAuth() {
  for (const fn of authListeners) fn(isLoggedIn());
}

export function isLoggedIn() {
  return accessToken !== null || sessionStorage.getItem(REFRESH_KEY) !== null;
}

export function hasRefreshToken() {
  return sessionStorage.getItem(REFRESH_KEY) !== null;
}

export function currentAccessToken() {
  return accessToken;
}

function setTokens(pair) {
  accessToken = pair.access_token;
  sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
  clearTimeout(refreshTimer);
  // Refresh a little before expiry so requests and the WebSocket never carry a stale token.
  const ttl = Math.max(Number(pair.expires_in) || 900, 30);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), Math.max(ttl - 30, ttl * 0.8) * 1000);
  emitAuth();
}

function dropTokens() {
  const had = isLoggedIn();
  accessToken = null;
  sessionStorage.removeItem(REFRESH_KEY);
  clearTimeout(refreshTimer);
  if (had) emitAuth();
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) return response.json();
  return response.text();
}

async function raw(method, path, body, token, { withHeaders = false } = {}) {
  const headers = { Accept: "application/json, application/problem+json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (exc) {
    throw new ApiError(0, { title: "Network error", detail: "The server could not be reached." });
  }
  const data = await parse(response).catch(() => null);
  if (!response.ok) {
    const problem = data && typeof data === "object" ? data : { title: response.statusText, detail: String(data || "") };
    const error = new ApiError(response.status, problem);
    error.retryAfter = response.headers.get("Retry-After");
    throw error;
  }
  return withHeaders ? { data, headers: response.headers } : data;
}

/** Rotate the token pair once, however many callers ask at the same time. */
export function refresh() {
  if (refreshing) return refreshing;
  const token = sessionStorage.getItem(REFRESH_KEY);
  if (!token) return Promise.reject(new ApiError(401, { title: "Not logged in" }));
  refreshing = raw("POST", "/auth/refresh", { refresh_token: token })
    .then((pair) => { setTokens(pair); return pair; })
    .catch((exc) => {
      if (exc.status === 401 || exc.status === 422) dropTokens();
      throw exc;
    })
    .finally(() => { refreshing = null; });
  return refreshing;
}

/** An authenticated request; a 401 triggers one refresh and one retry. */
export async function api(method, path, body, options = {}) {
  if (!accessToken && hasRefreshToken()) await refresh();
  try {
    return await raw(method, path, body, accessToken, options);
  } catch (exc) {
    if (exc.status === 401 && hasRefreshToken()) {
      await refresh();
      return raw(method, path, body, accessToken, options);
    }
    if (exc.status === 401) dropTokens();
    throw exc;
  }
}

export const publicApi = (method, path, body) => raw(method, path, body, null);

/** One page of a paged admin list: the items and the total the server counts (X-Total-Count). */
export async function apiPage(path) {
  const { data, headers } = await api("GET", path, undefined, { withHeaders: true });
  return { items: data, total: Number(headers.get("X-Total-Count") ?? data.length) };
}

export async function login(email, password) {
  setTokens(await raw("POST", "/auth/login", { email, password }));
}

export function register(email, password) {
  return raw("POST", "/auth/register", { email, password });
}

export async function logout() {
  const token = sessionStorage.getItem(REFRESH_KEY);
  try {
    if (token) await raw("POST", "/auth/logout", { refresh_token: token });
  } finally {
    dropTokens();
  }
}

/** A CSV (or other text) download through the authenticated API, saved via a blob URL. */
export async function download(path, filename) {
  if (!accessToken && hasRefreshToken()) await refresh();
  let response = await fetch(path, { headers: { Authorization: `Bearer ${accessToken}` }, cache: "no-store" });
  if (response.status === 401 && hasRefreshToken()) {
    await refresh();
    response = await fetch(path, { headers: { Authorization: `Bearer ${accessToken}` }, cache: "no-store" });
  }
  if (!response.ok) throw new ApiError(response.status, await parse(response).catch(() => ({})));
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
