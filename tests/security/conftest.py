"""A gateway with ws and wss listeners, a dev CA in a temporary store, and charge point records."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from security.ca import Issued
from security.passwords import hash_password, password_bytes_v2, password_bytes_v16
from security.records import ChargePointRecord, InMemoryRecordStore

from ..conftest import RunningGateway
from .helpers import AUTH_KEY_HEX, PASSWORD, EventLog, load_issuer


@dataclass
class SecureGateway:
    """The running gateway with its store, records, CA and collected security events."""

    server: RunningGateway
    certs_dir: Path
    records: InMemoryRecordStore
    issuer: Issued
    events: EventLog
    tmp: Path

    def ws(self, identity: str) -> str:
        return self.server.url(identity)

    def wss(self, identity: str) -> str:
        return self.server.wss_url(identity)


def standard_records() -> list[ChargePointRecord]:
    v2 = hash_password(password_bytes_v2(PASSWORD))
    return [
        ChargePointRecord("CP0", security_profile=0),
        ChargePointRecord("CP1", security_profile=1, password_hash=v2),
        ChargePointRecord(
            "CP16",
            security_profile=1,
            password_hash=hash_password(password_bytes_v16(AUTH_KEY_HEX)),
        ),
        ChargePointRecord("CP2", security_profile=2, password_hash=v2),
        ChargePointRecord("CP3", security_profile=3),
        ChargePointRecord("CP3O", security_profile=3, expected_o="ACME CPO"),
        ChargePointRecord("CP3SN", security_profile=3, expected_cn="SN-000123"),
        ChargePointRecord("CPOFF", security_profile=1, password_hash=v2, enabled=False),
    ]


@pytest.fixture
async def start_secure(start_gateway, tmp_path):
    async def start(**sections) -> SecureGateway:
        certs = tmp_path / "certs"
        records = InMemoryRecordStore(standard_records())
        security = {"dev_auto_register": False, **sections.pop("security", {})}
        tls = {"wss_bind": ["127.0.0.1:0"], "certs_dir": str(certs), **sections.pop("tls", {})}
        server = await start_gateway(records=records, tls=tls, security=security, **sections)
        events = EventLog()
        server.gateway.router.subscribe(events)
        return SecureGateway(server, certs, records, load_issuer(certs), events, tmp_path)

    return start


@pytest.fixture
async def secure(start_secure) -> SecureGateway:
    return await start_secure()
