"""Run the double as its own process: `python -m tests.binance_double --port N`.

Prints one line `READY http://127.0.0.1:N` on stdout once it accepts connections, so a parent process can
wait for it; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Literal

from tests.binance_double.server import _free_socket, start_runner
from tests.binance_double.state import ExchangeState


async def _main(host: str, port: int, duplicate_client_id: Literal["known", "open"]) -> None:
    sock = _free_socket(host, port)
    runner = await start_runner(ExchangeState(duplicate_client_id=duplicate_client_id), sock)
    print(f"READY http://{host}:{sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.binance_double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    parser.add_argument(
        "--duplicate-client-id",
        choices=("known", "open"),
        default="known",
        help="refuse a client order id already used by any order (known) or only by an open one (open, as "
        "Binance does): with `open` an order placed twice shows up as two exchange orders",
    )
    args = parser.parse_args(argv)
    asyncio.run(_main(args.host, args.port, args.duplicate_client_id))
    sys.exit(0)


if __name__ == "__main__":
    main()
