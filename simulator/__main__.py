"""``python -m simulator``: serve the LG cloud simulator until interrupted.

Configuration comes from SIM_* environment variables (see simulator/config.py).
Tokens and the service key are never logged.
"""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from simulator.app import create_app
from simulator.callbacks import redacted
from simulator.config import config_from_env


def main() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    log = logging.getLogger("simulator")
    config = config_from_env()
    log.info(
        "LG cloud simulator on http://%s:%d (time scale %gx, callbacks to %s)",
        config.host,
        config.port,
        config.time_scale,
        redacted(config.callback_url) if config.callback_url else "nowhere",
    )
    web.run_app(create_app(config), host=config.host, port=config.port, print=None)


if __name__ == "__main__":
    main()
