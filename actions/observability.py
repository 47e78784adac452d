"""The action server's readiness and metrics (attached by ``rasa_sdk_plugins``).

``GET /ready``
    200 ``{"status": "ready"}`` once the runtime is built and the database answers;
    503 with the reason otherwise (a load balancer keeps traffic away meanwhile).
``GET /metrics``
    Prometheus text (0.0.4): turns handled per action and outcome with their latency
    (``assistant_action_*``), this process's LG circuit states, and LG calls by endpoint
    and result code (every process's when Redis is shared, else this process's).

Transport only: it reads the runtime; it decides nothing. Imports rasa_sdk's Sanic only.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sanic import Sanic, response
from sanic.request import Request
from sqlalchemy import text

from assistant.runtime import get_runtime
from lgcloud.call_budget import MetricsText, add_budget_metrics

logger = logging.getLogger(__name__)

# Turn latency buckets (seconds): the voice deadline is 8 s, the target p95 0.3 s.
BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass
class ActionStats:
    """Per (action, outcome): count, latency sum and histogram."""

    count: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def observe(self, action: str, outcome: str, seconds: float) -> None:
        key = (action, outcome)
        self.count[key] += 1
        self.seconds[key] += seconds
        counts = self.buckets.setdefault(key, [0] * len(BUCKETS))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1

    def write(self, out: MetricsText) -> None:
        out.family(
            "assistant_action_runs_total",
            "counter",
            "Custom action runs, by action and outcome (ok, rejected, error).",
        )
        for (action, outcome), n in sorted(self.count.items()):
            out.sample("assistant_action_runs_total", n, action=action, outcome=outcome)
        out.family(
            "assistant_action_seconds", "histogram", "Time to run a custom action (a turn's work)."
        )
        for (action, outcome), counts in sorted(self.buckets.items()):
            for bound, n in zip(BUCKETS, counts, strict=True):
                out.sample(
                    "assistant_action_seconds_bucket", n, action=action, outcome=outcome,
                    le=f"{bound:g}",
                )  # fmt: skip
            total = self.count[(action, outcome)]
            out.sample(
                "assistant_action_seconds_bucket", total, action=action, outcome=outcome, le="+Inf"
            )
            out.sample(
                "assistant_action_seconds_sum", self.seconds[(action, outcome)], action=action,
                outcome=outcome,
            )  # fmt: skip
            out.sample("assistant_action_seconds_count", total, action=action, outcome=outcome)


def _action_of(request: Request) -> str:
    try:
        body = request.json
    except Exception:
        return "unreadable"
    name = body.get("next_action") if isinstance(body, dict) else None
    # Only names shaped like ours become label values (no unbounded label set).
    if isinstance(name, str) and name.startswith("action_") and len(name) <= 64:
        return name
    return "other"


def attach(app: Sanic) -> None:
    stats = ActionStats()

    @app.middleware("request")
    async def started(request: Request) -> None:
        if request.path == "/webhook":
            request.ctx.started = time.perf_counter()

    @app.middleware("response")
    async def finished(request: Request, answer: Any) -> None:
        began = getattr(request.ctx, "started", None)
        if began is None:
            return
        status = getattr(answer, "status", 500)
        outcome = "ok" if status < 400 else "rejected" if status < 500 else "error"
        stats.observe(_action_of(request), outcome, time.perf_counter() - began)

    @app.get("/ready")
    async def ready(_: Request) -> response.HTTPResponse:
        try:
            runtime = await get_runtime()
            async with runtime.storage.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            logger.warning("not ready: %s", type(exc).__name__)
            return response.json({"status": "not ready", "reason": type(exc).__name__}, 503)
        return response.json({"status": "ready"})

    @app.get("/metrics")
    async def metrics(_: Request) -> response.HTTPResponse:
        out = MetricsText()
        stats.write(out)
        try:
            runtime = await get_runtime()
        except Exception as exc:
            logger.warning("metrics without the runtime: %s", type(exc).__name__)
            return response.text(out.text(), content_type="text/plain; version=0.0.4")
        out.family(
            "lg_circuit_open", "gauge", "1 while this process's circuit to an LG cloud is open."
        )
        circuits = runtime.circuit.states() if runtime.circuit is not None else {}
        for name, state in sorted(circuits.items()):
            out.sample("lg_circuit_open", 1 if state == "opened" else 0, circuit=name)
        if runtime.budget is not None:
            add_budget_metrics(out, await runtime.budget.snapshot())
        return response.text(out.text(), content_type="text/plain; version=0.0.4")

    logger.info("action server: /ready and /metrics attached")
