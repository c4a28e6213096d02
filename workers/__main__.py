"""``python -m workers``: run one worker until SIGTERM or SIGINT (then stop gracefully)."""

from __future__ import annotations

import asyncio
import logging
import signal

from workers.worker import Worker
from zootrain.acl import warn_if_open
from zootrain.settings import get_settings


async def main() -> None:
    settings = get_settings()
    warn_if_open(settings.zk_auth, logging.getLogger("zootrain.worker"))
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    asyncio.run(main())
