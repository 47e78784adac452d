"""``make bench``: training time and turn latency, printed as one table.

Starts its own stack on free ports, measures the first turn of a new
conversation (account linking, device list and profiles fetched) and then
repeated control turns, and stops the stack.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from devstack.processes import Ports, Stack
from devstack.training import ensure_model, training_seconds

CONTROL_TURNS = 30


def _turn(client: httpx.Client, url: str, sender: str, text: str) -> float:
    started = time.perf_counter()
    response = client.post(url, json={"sender": sender, "message": text})
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return ordered[index]


def main() -> None:
    model = ensure_model()
    ports = Ports.free()
    with tempfile.TemporaryDirectory() as state, Stack(model, ports, Path(state)):
        url = f"http://127.0.0.1:{ports.rasa}/webhooks/rest/webhook"
        with httpx.Client(timeout=30) as client:
            _turn(client, url, "bench-warmup", "hello")  # loads the model's graph once
            first = _turn(client, url, "bench-user", "turn on express mode on my fridge")
            control = [
                _turn(client, url, "bench-user", f"set the living room ac to {20 + i % 8}")
                for i in range(CONTROL_TURNS)
            ]
            calls = client.get(f"http://127.0.0.1:{ports.simulator}/sim/calls").json()
    trained = training_seconds()
    rows = [
        ("model training time (s)", f"{trained:.1f}" if trained else "cached (no timing recorded)"),
        ("first turn of a new conversation (ms)", f"{first:.0f}"),
        (f"control turn p50 over {CONTROL_TURNS} (ms)", f"{statistics.median(control):.0f}"),
        (f"control turn p95 over {CONTROL_TURNS} (ms)", f"{percentile(control, 95):.0f}"),
        ("LG calls in the whole run", str(len(calls))),
    ]
    print_table("measure", "value", rows)


def print_table(first: str, rest: str, rows: list[tuple[str, str]]) -> None:
    """Rows of (name, already formatted columns) under a two-part header."""
    width = max(len(name) for name, _ in [(first, ""), *rows])
    print(f"{first.ljust(width)} | {rest}")
    print(f"{'-' * width}-|{'-' * (len(rest) + 1)}")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")


if __name__ == "__main__":
    main()
