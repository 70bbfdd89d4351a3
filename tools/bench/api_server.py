"""The HTTP API alone, in its own process, for the benchmark's API figures.

``python -m tools.bench.api_server DSN PORT`` serves ``api.app.create_app`` with the
pool the service uses, prints ``ready`` once listening, and runs until terminated.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from api.app import ApiRunner, create_app
from service.wiring import POOL_MAX_SIZE


async def serve(dsn: str, port: int) -> None:
    pool = AsyncConnectionPool(dsn, min_size=POOL_MAX_SIZE, max_size=POOL_MAX_SIZE, open=False)
    await pool.open(wait=True)
    runner = ApiRunner(create_app(pool, lambda: {}), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
