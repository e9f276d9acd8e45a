"""Peer `ocpp-lib`: the canonical Python central system, as the `ocpp` library documents it.

`ocpp.v16.ChargePoint` / `ocpp.v201.ChargePoint` subclasses with `@on` handlers, one instance per
connection, behind a `websockets` server on asyncio. The library's defaults are kept, in
particular its schema validation of every request and answer (jsonschema Draft 4, run in the
default thread pool: `ocpp.messages.ASYNC_VALIDATION` is True). The `ocpp` logger logs each
message at INFO; logging is left at WARNING, so only errors (a CALLERROR's cause) are written to
stderr, nothing per valid message.

websockets options: no permessage-deflate (`compression=None`) and no server pings
(`ping_interval=None`), the rest at websockets' defaults (max_size 1 MiB, backlog 100). A path
other than `/ocpp/{identity}` gets 404; a client offering neither `ocpp1.6` nor `ocpp2.0.1` gets
websockets' own 400. No authentication (the gateway checks Basic auth or certificates too).

Run: `python -m bench.peers.ocpp_lib --host 127.0.0.1 --port 0 [--cert F --key F [--client-ca F]]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.datatypes import IdTokenInfoType
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import AuthorizationStatusEnumType, RegistrationStatusEnumType
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from .startup import (
    SUBPROTOCOLS,
    PeerOptions,
    announce_listening,
    identity_of,
    parse_options,
    raise_fd_limit,
    server_ssl_context,
)

PEER = "ocpp-lib"
HEARTBEAT_INTERVAL = 300
CLOSE_SECONDS = 1.5  # SIGTERM: wait this long for closing handshakes, then exit anyway

_transaction_ids = itertools.count(1)  # StartTransaction's transactionId, process-wide


def _now() -> str:
    return datetime.now(UTC).isoformat()


class CentralSystem16(ChargePoint16):
    """The OCPP 1.6 side of one charge point's connection."""

    @on(Action16.boot_notification)
    def on_boot_notification(self, **_: Any) -> result16.BootNotification:
        return result16.BootNotification(
            current_time=_now(), interval=HEARTBEAT_INTERVAL, status=RegistrationStatus.accepted
        )

    @on(Action16.heartbeat)
    def on_heartbeat(self, **_: Any) -> result16.Heartbeat:
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    def on_status_notification(self, **_: Any) -> result16.StatusNotification:
        return result16.StatusNotification()

    @on(Action16.meter_values)
    def on_meter_values(self, **_: Any) -> result16.MeterValues:
        return result16.MeterValues()

    @on(Action16.authorize)
    def on_authorize(self, **_: Any) -> result16.Authorize:
        return result16.Authorize(id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted))

    @on(Action16.start_transaction)
    def on_start_transaction(self, **_: Any) -> result16.StartTransaction:
        return result16.StartTransaction(
            transaction_id=next(_transaction_ids),
            id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted),
        )

    @on(Action16.stop_transaction)
    def on_stop_transaction(self, **_: Any) -> result16.StopTransaction:
        return result16.StopTransaction()


class CentralSystem201(ChargePoint201):
    """The OCPP 2.0.1 side of one charge point's connection."""

    @on(Action201.boot_notification)
    def on_boot_notification(self, **_: Any) -> result201.BootNotification:
        return result201.BootNotification(
            current_time=_now(),
            interval=HEARTBEAT_INTERVAL,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action201.heartbeat)
    def on_heartbeat(self, **_: Any) -> result201.Heartbeat:
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    def on_status_notification(self, **_: Any) -> result201.StatusNotification:
        return result201.StatusNotification()

    @on(Action201.meter_values)
    def on_meter_values(self, **_: Any) -> result201.MeterValues:
        return result201.MeterValues()

    @on(Action201.transaction_event)
    def on_transaction_event(self, **_: Any) -> result201.TransactionEvent:
        return result201.TransactionEvent()

    @on(Action201.authorize)
    def on_authorize(self, **_: Any) -> result201.Authorize:
        return result201.Authorize(
            id_token_info=IdTokenInfoType(status=AuthorizationStatusEnumType.accepted)
        )


CENTRAL_SYSTEMS: dict[str, type[ChargePoint16] | type[ChargePoint201]] = {
    "ocpp1.6": CentralSystem16,
    "ocpp2.0.1": CentralSystem201,
}


def refuse_other_paths(connection: ServerConnection, request: Request) -> Response | None:
    """404 for a path that is not `/ocpp/{identity}` (before the upgrade)."""
    if identity_of(request.path) is None:
        return connection.respond(HTTPStatus.NOT_FOUND, "expected /ocpp/{identity}\n")
    return None


async def on_connection(connection: ServerConnection) -> None:
    """Serve one charge point until it disconnects."""
    assert connection.request is not None and connection.subprotocol is not None
    identity = identity_of(connection.request.path)
    central_system = CENTRAL_SYSTEMS[connection.subprotocol](identity, connection)
    with contextlib.suppress(ConnectionClosed):
        await central_system.start()


async def run(options: PeerOptions) -> None:
    """Serve until SIGTERM or SIGINT, then close every connection (bounded) and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server: Server = await serve(
        on_connection,
        options.host,
        options.port,
        subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],
        process_request=refuse_other_paths,
        compression=None,
        ping_interval=None,
        ssl=server_ssl_context(options.tls) if options.tls is not None else None,
    )
    announce_listening(PEER, server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), CLOSE_SECONDS)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(PEER, argv)
    raise_fd_limit()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
