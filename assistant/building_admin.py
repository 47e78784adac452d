"""Grant, revoke and list building (BECON site) access for chat senders.

    python -m assistant.building_admin grant SENDER_ID SITE_CODE manager|occupant
    python -m assistant.building_admin revoke SENDER_ID
    python -m assistant.building_admin list

BECON authenticates our service, not the person, so this is where a building
administrator says who may control a site (manager) or only read it (occupant). Uses
the same database as the assistant (DATABASE_URL, or the embedded default).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from assistant.settings import SettingsError, load_settings
from assistant.storage import Storage
from assistant.storage.building_links import ROLES


async def _main(args: argparse.Namespace) -> int:
    storage = await Storage.open(load_settings())
    try:
        links = storage.building_links
        if args.command == "grant":
            access = await links.grant(args.sender_id, args.site_code, args.role)
            print(f"{access.sender_id}: {access.role} of site {access.site_code}")
        elif args.command == "revoke":
            removed = await links.revoke(args.sender_id)
            print(f"{args.sender_id}: {'revoked' if removed else 'had no building access'}")
        else:
            for access in await links.all():
                print(f"{access.sender_id}\t{access.site_code}\t{access.role}")
    finally:
        await storage.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.building_admin")
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant", help="give a sender a role at a site")
    grant.add_argument("sender_id")
    grant.add_argument("site_code")
    grant.add_argument("role", choices=ROLES)
    revoke = commands.add_parser("revoke", help="take a sender's building access away")
    revoke.add_argument("sender_id")
    commands.add_parser("list", help="every sender with building access")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
