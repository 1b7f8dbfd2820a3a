"""`tradebridge up`: every service in one process on one port, on SQLite and the in-process bus."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.app import create_app
from shared.settings import Settings


def create_embedded_app(settings: Settings) -> FastAPI:
    from events.app import events_hook, install_events
    from execution.service import start_execution
    from pricefeed.runner import start_pricefeed

    app = create_app(settings, migrate=True, hooks=[events_hook, start_execution, start_pricefeed])
    install_events(app)
    return app
