"""``python -m devstack demo|train|model-path``: the commands behind ``make demo``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from devstack.processes import Ports, Stack
from devstack.training import ensure_model


def demo() -> int:
    model = ensure_model()
    ports = Ports.from_env(os.environ)
    stack = Stack(model_path=model, ports=ports)
    print(
        "starting simulator, callback sink, connector, action server, Rasa and the sample "
        "partner site (model load takes ~40 s)..."
    )
    stack.start()
    print(
        f"""
The assistant is running in demo mode (LG cloud simulator, demo household).

  Chat widget:  open http://127.0.0.1:{ports.partner}/ (a partner's page embedding it)
  Talk to it:   curl -s localhost:{ports.rasa}/webhooks/rest/webhook \\
                  -d '{{"sender": "me", "message": "turn on express mode on my fridge"}}'
  Callback:     POST localhost:{ports.rasa}/webhooks/callback/webhook (replies go to CALLBACK_URL)
  Notifications: say "notify me when the washer is done" on the callback channel, then
                "start the washer"; about 45 s later the sink gets "Your Washer has finished
                washing." (see it: curl -s 'localhost:{ports.sink}/messages?sender=<you>')
  LG callbacks: POST localhost:{ports.connector}/lg/callbacks?secret=... (the connector)
  Simulator:    curl -s localhost:{ports.simulator}/sim/devices
  Logs:         {stack.state_dir / "logs"}

Press Ctrl-C to stop.""",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            dead = stack.dead()
            if dead:
                for proc in dead:
                    print(
                        f"{proc.name} stopped unexpectedly:\n{stack.log_tail(proc)}",
                        file=sys.stderr,
                    )
                return 1
            time.sleep(1)
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["demo", "train", "model-path"])
    args = parser.parse_args()
    if args.command == "demo":
        return demo()
    path = ensure_model()
    if args.command == "model-path":
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
