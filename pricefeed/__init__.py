"""Pricefeed service: price sources, staleness, candles, positions and live PnL.

`pricefeed.domain` is the pure core (mypy --strict); `pricefeed.sources` the async sources
(`build_source`); `pricefeed.service.PriceFeedService` wires them to a sink and a candle store.
"""
