"""Who may use which BECON site, in which role (assistant/storage/building_links.py),
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from assistant import building_admin
from assistant.storage.building_links import MANAGER, OCCUPANT, SiteAccess


async def test_grant_replaces_and_revoke_removes(storage) -> None:
    links = storage.building_links
    assert await links.get("s1") is None
    assert await links.grant("s1", "HQ", OCCUPANT) == SiteAccess("s1", "HQ", OCCUPANT)
    await links.grant("s1", "HQ", MANAGER)
    access = await links.get("s1")
    assert access == SiteAccess("s1", "HQ", MANAGER) and access.may_control
    assert await links.all() == [access]
    assert await links.revoke("s1") is True
    assert await links.revoke("s1") is False
    assert await links.get("s1") is None


async def test_grant_if_absent_keeps_an_existing_grant(storage) -> None:
    links = storage.building_links
    await links.grant("s1", "HQ", OCCUPANT)
    assert (await links.grant_if_absent("s1", "HQ", MANAGER)).role == OCCUPANT


async def test_concurrent_first_grants_leave_one_row(storage) -> None:
    links = storage.building_links
    granted = await asyncio.gather(*(links.grant_if_absent("s2", "HQ", MANAGER) for _ in range(5)))
    assert set(granted) == {SiteAccess("s2", "HQ", MANAGER)}
    assert len(await links.all()) == 1


@pytest.mark.parametrize(
    ("sender", "site", "role"),
    [("", "HQ", MANAGER), ("s", "", MANAGER), ("s", "HQ", "owner"), ("x" * 256, "HQ", MANAGER)],
)
async def test_bad_grants_are_refused_and_nothing_is_written(storage, sender, site, role) -> None:
    with pytest.raises(ValueError):
        await storage.building_links.grant(sender, site, role)
    assert await storage.building_links.all() == []


def test_the_admin_command_grants_lists_and_revokes(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}")
    assert building_admin.main(["grant", "telegram:42", "HQ", "occupant"]) == 0
    assert building_admin.main(["list"]) == 0
    assert building_admin.main(["revoke", "telegram:42"]) == 0
    assert building_admin.main(["revoke", "telegram:42"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "telegram:42: occupant of site HQ",
        "telegram:42\tHQ\toccupant",
        "telegram:42: revoked",
        "telegram:42: had no building access",
    ]
    with pytest.raises(SystemExit) as refused:
        building_admin.main(["grant", "telegram:42", "HQ", "owner"])
    assert refused.value.code == 2
