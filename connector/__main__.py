"""``python -m connector``: LG callback receiver + delivery worker; ``… outbox``: delivery state.

    python -m connector                  # receiver and worker (CONNECTOR_HOST:CONNECTOR_PORT)
    python -m connector --no-receiver    # a delivery worker only (needs REDIS_URL)
    python -m connector --no-worker      # a receiver only (needs REDIS_URL)
    python -m connector outbox [--sender S] [--state failed] [--message M] [--limit N]

Configuration comes from the environment (assistant/settings.py). Exit status 2 means
the configuration cannot work; the message says what to change.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime

from assistant.settings import Settings, SettingsError, load_settings
from assistant.storage import create_engine, create_schema
from assistant.storage.crypto import TokenKeyError
from connector.service import Roles, StartupError, serve
from connector.store import OUTBOX_STATES, DeliveryStore, OutboxRow


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m connector", description=__doc__.split("\n")[0])
    parser.add_argument("--no-receiver", action="store_true", help="run the delivery worker only")
    parser.add_argument("--no-worker", action="store_true", help="run the callback receiver only")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "INFO"),
        help="DEBUG, INFO (default, or $LOG_LEVEL), WARNING, ERROR",
    )
    commands = parser.add_subparsers(dest="command")
    outbox = commands.add_parser("outbox", help="show proactive messages and their delivery state")
    outbox.add_argument("--sender", help="only this conversation (sender id)")
    outbox.add_argument("--state", choices=OUTBOX_STATES, help="only rows in this state")
    outbox.add_argument("--message", help="only rows of this LG message id")
    outbox.add_argument("--limit", type=int, default=50, help="newest N rows (default 50)")
    return parser


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def outbox_table(rows: Sequence[OutboxRow]) -> str:
    """The rows as a plain-text table, newest first, the error reason last and whole."""
    header = ("id", "sender", "channel", "state", "attempts", "created", "delivered", "last_error")
    lines = [
        (
            row.id,
            row.sender_id,
            row.channel or "-",
            row.state,
            str(row.attempts),
            _when(row.created_at),
            _when(row.delivered_at),
            row.last_error or "",
        )
        for row in rows
    ]
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(7)]
    out = []
    for line in [header, *lines]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:7])]
        out.append("  ".join([*cells, line[7]]).rstrip())
    return "\n".join(out)


async def show_outbox(settings: Settings, args: argparse.Namespace) -> int:
    # The engine only: listing needs no token key and no planner.
    engine = create_engine(settings.database_url)
    try:
        await create_schema(engine)
        store = DeliveryStore(engine)
        rows = await store.list_outbox(
            sender_id=args.sender, state=args.state, message_id=args.message, limit=args.limit
        )
        counts = await store.count_by_state()
    finally:
        await engine.dispose()
    print(outbox_table(rows) if rows else "no outbox rows match")
    print("\nall rows: " + ", ".join(f"{count} {state}" for state, count in counts.items()))
    return 0


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # optional: the standard loop works, a little slower
        return
    uvloop.install()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        if args.command == "outbox":
            return asyncio.run(show_outbox(settings, args))
        _install_uvloop()
        # SQLite runs on aiosqlite's threads: every statement hands over the GIL twice.
        # With the default 5 ms switch interval a busy event loop makes each hand-over
        # wait up to 5 ms, which piles up to tens of ms per batch; 0.5 ms keeps the
        # callback-to-delivery tail short at a small cost in throughput.
        sys.setswitchinterval(0.0005)
        asyncio.run(
            serve(settings, Roles(receiver=not args.no_receiver, worker=not args.no_worker))
        )
    except (StartupError, SettingsError, TokenKeyError) as error:
        print(f"connector: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
