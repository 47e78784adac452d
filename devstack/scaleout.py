"""The stack scaled out on one machine, the way production runs it: two Rasa servers and
two action servers sharing the PostgreSQL tracker store and the Redis lock store, two
connectors (receiver + worker, and a second worker) on one PostgreSQL database and one
Redis stream. A load balancer in front of the two Rasa ports would alternate between
them; the tests alternate by hand (``tests/test_scaleout_stack.py``).

    stack = ScaleOutStack(model_path, ports, state_dir, env={...}, scale=ScalePorts.free(),
                          database_url=..., redis_url=...)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace

from devstack.processes import Process, Stack, free_port


@dataclass(frozen=True)
class ScalePorts:
    """The second copy of each scaled process."""

    rasa: int
    actions: int
    connector: int

    @classmethod
    def free(cls) -> ScalePorts:
        return cls(free_port(), free_port(), free_port())


@dataclass
class ScaleOutStack(Stack):
    scale: ScalePorts = field(default_factory=ScalePorts.free)
    # Shared by every process: the assistant's tables and Rasa's tracker store (PostgreSQL),
    # the lock store and the delivery stream (Redis).
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "scaleout"

    def child_env(self) -> dict[str, str]:
        if not self.database_url.startswith("postgresql") or not self.redis_url:
            raise ValueError("a scaled-out stack needs PostgreSQL and Redis URLs")
        return {
            **super().child_env(),
            "DATABASE_URL": self.database_url,
            "TRACKER_STORE_URL": self.database_url,
            "LOCK_STORE_URL": self.redis_url,
            "REDIS_URL": self.redis_url,
            "CONNECTOR_REDIS_PREFIX": self.redis_prefix,
            # How long the conversations of a Rasa server that died mid-turn wait (Rasa's
            # default is 60 s); live turns renew their tickets (rasa_ext/redis_lock.py).
            "TICKET_LOCK_LIFETIME": os.environ.get("TICKET_LOCK_LIFETIME", "10"),
        }

    def plan(self) -> list[Process]:
        first = {p.name: p for p in super().plan() if p.name != "partner-site"}
        actions2 = replace(
            first["action-server"],
            name="action-server-2",
            command=_with_port(first["action-server"].command, self.scale.actions),
            ready_url=f"http://127.0.0.1:{self.scale.actions}/health",
        )
        rasa2 = replace(
            first["rasa"],
            name="rasa-2",
            command=_with_port(first["rasa"].command, self.scale.rasa),
            ready_url=f"http://127.0.0.1:{self.scale.rasa}/",
            env={"ACTION_ENDPOINT_URL": f"http://127.0.0.1:{self.scale.actions}/webhook"},
        )
        # A second connector (its receiver idle: LG calls the first) whose worker shares the
        # Redis stream with the first one's: two delivery workers, one consumer group.
        worker2 = Process(
            "connector-2",
            [sys.executable, "-m", "connector"],
            f"http://127.0.0.1:{self.scale.connector}/health",
            env={"CONNECTOR_PORT": str(self.scale.connector)},
        )
        return [
            first["simulator"],
            first["callback-sink"],
            first["connector"],
            worker2,
            first["action-server"],
            actions2,
            first["rasa"],
            rasa2,
        ]


def _with_port(command: list[str], port: int) -> list[str]:
    changed = list(command)
    changed[changed.index("--port") + 1] = str(port)
    return changed
