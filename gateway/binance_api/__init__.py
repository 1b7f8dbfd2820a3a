"""The Binance-compatible API: Binance's spot REST subset under /binance/api/v3, authenticated by API keys
that TradeBridge issues (managed under /api/api-keys), over the one paper book. See docs/binance-api.md."""

from fastapi import APIRouter

from gateway.binance_api.routes import router as _binance
from gateway.routes.apikeys import router as _keys

router = APIRouter()
router.include_router(_keys)
router.include_router(_binance)

__all__ = ["router"]
