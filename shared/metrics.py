"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("tradebridge_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "tradebridge_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOGINS = Counter("tradebridge_logins_total", "Login attempts", ["outcome"])
ORDERS_ACCEPTED = Counter("tradebridge_orders_accepted_total", "Orders accepted", ["mode"])
ACCEPT_GROUP = Histogram(
    "tradebridge_accept_group_orders",
    "Paper orders per acceptance statement of the gateway's group commit (PostgreSQL)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
)
ORDER_EVENTS = Counter("tradebridge_order_events_total", "Order status changes", ["mode", "status"])
OUTBOX_LAG = Gauge("tradebridge_outbox_pending", "Outbox rows not yet published")
WS_CONNECTIONS = Gauge("tradebridge_ws_connections", "Open WebSocket connections")
RECON_MISMATCHES = Gauge("tradebridge_reconciliation_mismatches", "Mismatches in the latest report", ["kind"])
