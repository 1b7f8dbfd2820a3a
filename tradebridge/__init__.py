"""TradeBridge: the composition root (bootstrap) and the `tradebridge` command line."""
