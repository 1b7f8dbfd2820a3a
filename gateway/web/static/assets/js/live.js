// The live connection: one WebSocket per tab (`/ws`, the access token offered as the subprotocols
// ["bearer", TOKEN] so it stays out of URLs and their logs), public channel subscriptions, reconnect with
// exponential backoff and jitter, resume from the highest private event id seen (`?last_event_id=` on the
// connect URL, so the replay is atomic with the connection), and a status the header shows.
// While the socket is not open the views poll REST, so the page keeps working if `/ws` is not mounted.

import { currentAccessToken, refresh } from "./api.js";

const PRIVATE = new Set(["ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE"]);
const PING_MS = 25_000;
export const MAX_BACKOFF_MS = 15_000;

const EVENT_ID = /^(\d+)(?:-(\d+))?$/;

/**
 * Compare two event ids ("<ms>-<seq>", a stream position; "<ms>" is seq 0) as the server does, by their two
 * numbers: as strings "999-0" would sort after "1700000000000-0". Negative, 0 or positive; null if either is
 * not an id.
 */
export function compareEventIds(a, b) {
  const ma = EVENT_ID.exec(String(a));
  const mb = EVENT_ID.exec(String(b));
  if (!ma || !mb) return null;
  const [msA, seqA, msB, seqB] = [ma[1], ma[2] || "0", mb[1], mb[2] || "0"].map(BigInt);
  if (msA !== msB) return msA < msB ? -1 : 1;
  return seqA === seqB ? 0 : seqA < seqB ? -1 : 1;
}

/**
 * The private event id to resume from after `message`: the highest private event id seen (a replay may
 * deliver older ids after newer live ones: the point never moves back); none after RESYNC_REQUIRED (the
 * server no longer holds what came after it: the views reload their snapshots).
 */
export function resumePoint(lastEventId, message) {
  if (message.type === "RESYNC_REQUIRED") return null;
  if (!PRIVATE.has(message.type) || !EVENT_ID.test(String(message.id ?? ""))) return lastEventId;
  if (lastEventId && compareEventIds(message.id, lastEventId) <= 0) return lastEventId;
  return message.id;
}

/** The socket's URL: the resume point goes on it, so the server replays before it sends anything live. */
export function socketUrl(loc, lastEventId) {
  const scheme = loc.protocol === "https:" ? "wss" : "ws";
  const query = lastEventId ? `?last_event_id=${encodeURIComponent(lastEventId)}` : "";
  return `${scheme}://${loc.host}/ws${query}`;
}

/**
 * Milliseconds before reconnect attempt `attempts` (1, 2, ...): 0.5 s doubling up to the ceiling (twice as
 * long once the socket failed to open twice in a row: the page polls meanwhile), of which a random half.
 */
export function backoffDelay(attempts, failuresBeforeOpen, random = Math.random) {
  const ceiling = failuresBeforeOpen >= 2 ? MAX_BACKOFF_MS * 2 : MAX_BACKOFF_MS;
  const base = Math.min(ceiling, 500 * 2 ** Math.min(attempts - 1, 10));
  return base / 2 + random() * (base / 2);
}

export class Live {
  constructor() {
    this.ws = null;
    this.status = "offline";
    this.channels = new Set();
    this.handlers = new Map();
    this.statusListeners = new Set();
    this.lastEventId = null;
    this.attempts = 0;
    this.failuresBeforeOpen = 0;
    this.timer = null;
    this.pinger = null;
    this.running = false;
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type)?.delete(fn);
  }

  onStatus(fn) {
    this.statusListeners.add(fn);
    fn(this.status);
    return () => this.statusListeners.delete(fn);
  }

  get isLive() {
    return this.status === "live";
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    for (const fn of this.statusListeners) fn(status);
  }

  emit(type, message) {
    for (const fn of this.handlers.get(type) || []) {
      try { fn(message.data, message); } catch (exc) { console.error("live handler failed", type, exc); }
    }
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "bye");
    }
    this.lastEventId = null;
    this.setStatus("offline");
  }

  subscribe(channels) {
    const fresh = channels.filter((c) => !this.channels.has(c));
    fresh.forEach((c) => this.channels.add(c));
    if (fresh.length) this.send({ op: "subscribe", channels: fresh });
  }

  unsubscribe(channels) {
    const gone = channels.filter((c) => this.channels.delete(c));
    if (gone.length) this.send({ op: "unsubscribe", channels: gone });
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  async connect() {
    if (!this.running) return;
    this.setStatus(this.failuresBeforeOpen >= 2 ? "polling" : this.attempts ? "reconnecting" : "connecting");
    let token = currentAccessToken();
    if (!token) {
      try { token = (await refresh()).access_token; } catch { this.setStatus("offline"); return; }
    }
    let ws;
    try {
      ws = new WebSocket(socketUrl(location, this.lastEventId), ["bearer", token]);
    } catch {
      this.scheduleReconnect(false);
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      this.attempts = 0;
      this.failuresBeforeOpen = 0;
      if (this.channels.size) this.send({ op: "subscribe", channels: [...this.channels] });
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ op: "ping" }), PING_MS);
      this.setStatus("live");
      this.emit("OPEN", { data: {} });
    });
    ws.addEventListener("message", (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (!message || typeof message.type !== "string") return;
      this.lastEventId = resumePoint(this.lastEventId, message);
      this.emit(message.type, message);
    });
    ws.addEventListener("close", async (event) => {
      if (this.ws !== ws) return; // replaced or stopped on purpose
      this.ws = null;
      clearInterval(this.pinger);
      if (!this.running) return;
      if (event.code === 4401) {
        // Expired or revoked token: rotate once, then reconnect; a failed refresh means logged out.
        try { await refresh(); } catch { this.setStatus("offline"); return; }
      }
      this.scheduleReconnect(opened);
    });
  }

  scheduleReconnect(hadOpened) {
    if (!hadOpened) this.failuresBeforeOpen += 1;
    this.attempts += 1;
    this.setStatus(this.failuresBeforeOpen >= 2 ? "polling" : "reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), backoffDelay(this.attempts, this.failuresBeforeOpen));
  }
}

export const live = new Live();
