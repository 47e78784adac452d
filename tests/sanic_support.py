"""A channel's Sanic blueprint served for real on loopback, as Rasa mounts it.

The channel tests (Telegram, chat widget) talk to their channel over HTTP/WebSockets
rather than through Sanic's test client, so the blueprint runs in a small Sanic app of its
own on a free port, with the server's lifecycle hooks run as ``sanic serve`` would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sanic import Blueprint, Sanic

from connector.sanic_accept import tolerate_malformed_accept
from devstack.processes import free_port


@asynccontextmanager
async def serve_blueprint(
    blueprint: Blueprint, url_prefix: str, *, name: str = "channel-test"
) -> AsyncIterator[str]:
    """Serve ``blueprint`` at ``url_prefix`` (e.g. ``/webhooks/widget``) in a fresh Sanic
    app on 127.0.0.1; yields the server's base URL (``http://127.0.0.1:<port>``, without
    the prefix) and stops the server on exit. ``name`` starts the app's unique name."""
    # Test mode lets Sanic start a second app in one process (its touch-up of the HTTP
    # protocol class otherwise fails the second time), as sanic-testing does.
    Sanic.test_mode = True
    tolerate_malformed_accept()  # as in Rasa's server (installed by rasa_ext)
    app = Sanic(f"{name}-{uuid.uuid4().hex}")
    app.blueprint(blueprint, url_prefix=url_prefix)
    port = free_port()
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.before_stop()
        await server.close()
        await server.after_stop()
