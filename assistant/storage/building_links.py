"""Which BECON site each chat sender may use, and in which role (``building_links``).

BECON Connect authenticates our service, not the person talking, so who may do what at
a site is ours to decide and keep: a *manager* reads and controls the site's
facilities, an *occupant* only reads them. Granting and revoking is an administrator's
job (``python -m assistant.building_admin``); in demo mode every new sender becomes the
demo site's manager (demo-stack.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from assistant.storage.models import BuildingLink as _Row
from assistant.storage.models import utcnow

_table = _Row.__table__

MANAGER = "manager"
OCCUPANT = "occupant"
ROLES = (MANAGER, OCCUPANT)


@dataclass(frozen=True)
class SiteAccess:
    sender_id: str
    site_code: str
    role: str

    @property
    def may_control(self) -> bool:
        return self.role == MANAGER


def _checked(sender_id: str, site_code: str, role: str) -> None:
    if not sender_id or len(sender_id) > 255:
        raise ValueError("sender_id must be a non-empty string of at most 255 characters")
    if not site_code or len(site_code) > 64:
        raise ValueError("site_code must be a non-empty string of at most 64 characters")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")


class BuildingLinkRepository:
    def __init__(self, session_factory: sessionmaker) -> None:
        self._sessions = session_factory

    def __repr__(self) -> str:
        return "BuildingLinkRepository()"

    async def get(self, sender_id: str) -> SiteAccess | None:
        async with self._sessions() as session:
            row = (
                await session.execute(select(_table).where(_table.c.sender_id == sender_id))
            ).first()
        return SiteAccess(row.sender_id, row.site_code, row.role) if row else None

    async def grant(self, sender_id: str, site_code: str, role: str) -> SiteAccess:
        """Give ``sender_id`` ``role`` at ``site_code``, replacing any earlier grant."""
        _checked(sender_id, site_code, role)
        values = {"site_code": site_code, "role": role, "updated_at": utcnow()}
        async with self._sessions() as session, session.begin():
            changed = await session.execute(
                update(_table).where(_table.c.sender_id == sender_id).values(**values)
            )
            if changed.rowcount == 0:
                await session.execute(_table.insert().values(sender_id=sender_id, **values))
        return SiteAccess(sender_id, site_code, role)

    async def grant_if_absent(self, sender_id: str, site_code: str, role: str) -> SiteAccess:
        """The sender's grant; ``role`` at ``site_code`` if it had none (race-safe: when two
        first messages arrive at once, one insert wins and both see its row)."""
        _checked(sender_id, site_code, role)
        existing = await self.get(sender_id)
        if existing is not None:
            return existing
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    _table.insert().values(sender_id=sender_id, site_code=site_code, role=role)
                )
        except IntegrityError:
            pass  # another request granted it first
        granted = await self.get(sender_id)
        assert granted is not None
        return granted

    async def revoke(self, sender_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            removed = await session.execute(delete(_table).where(_table.c.sender_id == sender_id))
        return bool(removed.rowcount)

    async def all(self) -> list[SiteAccess]:
        async with self._sessions() as session:
            rows = (await session.execute(select(_table).order_by(_table.c.sender_id))).all()
        return [SiteAccess(r.sender_id, r.site_code, r.role) for r in rows]
