"""`tradebridge up`: every service in one process on one port, on SQLite and the in-process bus."""

from __future__ import annotations

from fastapi import FastAPI

from shared.settings import Settings
from tradebridge.app import SERVICES, create_app


def create_embedded_app(settings: Settings) -> FastAPI:
    return create_app(settings, migrate=True, services=SERVICES)
