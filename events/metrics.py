"""Counters of the events service (the open-connection gauge is `shared.metrics.WS_CONNECTIONS`)."""

from __future__ import annotations

from prometheus_client import Counter

WS_MESSAGES_SENT = Counter("tradebridge_ws_messages_sent_total", "Messages sent to WebSocket clients")
WS_DISCONNECTS = Counter(
    "tradebridge_ws_disconnects_total", "WebSocket connections closed by the server", ["reason"]
)
WS_RESUMES = Counter("tradebridge_ws_resumes_total", "Resume requests", ["outcome"])
WS_BUS_ERRORS = Counter("tradebridge_ws_bus_errors_total", "Bus read failures in the events hub")
