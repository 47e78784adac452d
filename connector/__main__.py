"""``python -m connector`` (receiver + delivery worker) and ``python -m connector outbox``.

python -m connector                 # both, on CONNECTOR_HOST:CONNECTOR_PORT (8702)
python -m connector --no-receiver   # a delivery worker only (needs REDIS_URL)
python -m connector outbox [--sender S] [--state failed] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from assistant.settings import SettingsError, load_settings
from assistant.storage import Storage
from connector.notifier import ConfigurationError, serve
from connector.outbox_store import OutboxStore


async def show_outbox(args: argparse.Namespace) -> int:
    storage = await Storage.open(load_settings())
    try:
        rows = await OutboxStore(storage.sessions).rows(
            sender_id=args.sender, state=args.state, limit=args.limit
        )
    finally:
        await storage.close()
    header = f"{'id':36}  {'sender':24} {'channel':9} {'state':9} {'tries':5}"
    print(f"{header}  created / delivered / error")
    for r in rows:
        when = r.delivered_at.isoformat(timespec="seconds") if r.delivered_at else "-"
        print(
            f"{r.id:36}  {r.sender_id[:24]:24} {str(r.channel)[:9]:9} {r.state:9} {r.attempts:5}"
            f"  {r.created_at.isoformat(timespec='seconds')} / {when} / {r.last_error or ''}"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m connector")
    parser.add_argument("--no-receiver", action="store_true", help="deliver only")
    parser.add_argument("--no-worker", action="store_true", help="receive only")
    sub = parser.add_subparsers(dest="command")
    outbox = sub.add_parser("outbox", help="show delivery state (pending/delivered/failed)")
    outbox.add_argument("--sender")
    outbox.add_argument("--state", choices=["pending", "sending", "delivered", "failed"])
    outbox.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "outbox":
            return asyncio.run(show_outbox(args))
        asyncio.run(
            serve(load_settings(), receiver=not args.no_receiver, worker=not args.no_worker)
        )
    except (ConfigurationError, SettingsError) as exc:
        print(f"connector: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
