"""Security actions refuse up front what they could not store."""

from __future__ import annotations

import pytest

from gateway.registry import InMemoryRegistry
from gateway.router import Router
from gateway.security_actions import ActionFailed, SecurityActions
from security.records import ChargePointRecord, InMemoryRecordStore


@pytest.mark.parametrize("action", ["rotate_password", "upgrade_profile"])
async def test_credential_changes_are_refused_while_the_shared_store_is_unreachable(action):
    records = InMemoryRecordStore([ChargePointRecord("CPU", 1, "hash")])
    actions = SecurityActions(records, Router(InMemoryRegistry()), can_persist=lambda: False)
    call = actions.rotate_password("CPU") if action == "rotate_password" else None
    with pytest.raises(ActionFailed) as failed:
        await (call or actions.upgrade_profile("CPU", 2))
    assert failed.value.code == "unavailable"
    assert records.get("CPU") == ChargePointRecord("CPU", 1, "hash")
