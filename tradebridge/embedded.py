"""`tradebridge up`: every service in one process on one port, on SQLite and the in-process bus."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.app import create_app
from shared.settings import Settings


def create_embedded_app(settings: Settings) -> FastAPI:
    from execution.service import start_execution
    from pricefeed.runner import start_pricefeed

    return create_app(settings, migrate=True, hooks=[start_execution, start_pricefeed])
