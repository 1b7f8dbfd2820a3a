"""Symbol spelling shared by every service (the price sources, the position fold, execution, reconciliation)."""

from __future__ import annotations

# Longest first, so "FDUSD" wins over "USD"-like suffixes when splitting a concatenated symbol.
KNOWN_QUOTES: tuple[str, ...] = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


def normalize_symbol(symbol: str) -> str:
    """Accept `BTC/USDT`, `btc-usdt` or `BTCUSDT`; the canonical spelling is `BTCUSDT`."""
    return symbol.replace("/", "").replace("-", "").replace("_", "").upper()


def split_symbol(symbol: str) -> tuple[str, str]:
    """`BTCUSDT` -> (`BTC`, `USDT`): positions need the base and quote to classify fee assets."""
    if "/" in symbol:
        base, _, quote = symbol.upper().partition("/")
        return base, quote
    canon = normalize_symbol(symbol)
    for quote in KNOWN_QUOTES:
        if canon.endswith(quote) and len(canon) > len(quote):
            return canon[: -len(quote)], quote
    raise ValueError(f"cannot split symbol {symbol!r} into base and quote")


def to_ccxt_symbol(symbol: str) -> str:
    """`BTCUSDT` -> `BTC/USDT`, the spelling ccxt's unified API wants."""
    base, quote = split_symbol(symbol)
    return f"{base}/{quote}"
