"""rasa_sdk's plugin hook (``rasa_sdk.plugin`` imports this package by name): gives the
action server ``/ready`` and Prometheus ``/metrics`` next to its own ``/health``, without
changing how it is started (``python -m rasa_sdk --actions actions``)."""

from __future__ import annotations

import sys
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("rasa_sdk")


def init_hooks(manager: pluggy.PluginManager) -> None:
    manager.register(sys.modules[__name__])


@hookimpl  # type: ignore[misc]
def attach_sanic_app_extensions(app: Any) -> None:
    from actions.observability import attach
    from connector.sanic_accept import tolerate_malformed_accept

    tolerate_malformed_accept()
    attach(app)
