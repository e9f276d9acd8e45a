"""The UI WebSocket API: authentication, roles and scopes, every message type, commands with the
charge point's real answer, back-pressure, and bad input."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ..integration.clients import running_station
from .conftest import connect, connect_silent

CHANGE = {"key": "HeartbeatInterval", "value": "60"}


# -- authentication --------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Bearer ogw_not-a-token", "Bearer ", "Basic abc", "Bearer"])
async def test_bad_bearer_token_is_refused_with_401_before_the_upgrade(ui_gateway, header):
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(ui_gateway.ui_url, additional_headers={"Authorization": header})
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_expired_and_revoked_tokens_are_refused(ui_gateway):
    expired = ui_gateway.add_token("expired", "admin", expires_in=0.01)
    revoked = ui_gateway.add_token("revoked", "admin")
    record = next(t for t in ui_gateway.tokens.all() if t.name == "revoked")
    assert ui_gateway.tokens.revoke(record.token_id)
    await asyncio.sleep(0.05)
    for secret in (expired, revoked):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                ui_gateway.ui_url, additional_headers={"Authorization": f"Bearer {secret}"}
            )
        assert refused.value.response.status_code == 401


async def test_browser_style_token_as_first_message(ui_gateway):
    async with websockets.connect(ui_gateway.ui_url) as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": ui_gateway.secrets["viewer"]}))
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), 2))
    assert welcome["type"] == "welcome" and welcome["role"] == "viewer"
    assert welcome["scopes"] == ["*"]


@pytest.mark.parametrize(
    "first", [{"type": "auth", "token": "ogw_wrong"}, {"type": "list", "id": "1"}, "garbage"]
)
async def test_wrong_first_message_closes_with_policy_violation(ui_gateway, first):
    async with websockets.connect(ui_gateway.ui_url) as ws:
        await ws.send(first if isinstance(first, str) else orjson.dumps(first).decode())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "authentication failed"


async def test_no_auth_message_within_the_deadline_closes_with_policy_violation(ui_gateway):
    async with websockets.connect(ui_gateway.ui_url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3)
    assert closed.value.rcvd.code == 1008
    assert "no auth message" in closed.value.rcvd.reason


async def test_revoked_token_is_disconnected_at_its_next_message(ui_gateway):
    client = await connect(ui_gateway, "operator")
    record = next(t for t in ui_gateway.tokens.all() if t.name == "operator")
    ui_gateway.tokens.revoke(record.token_id)
    await client.send({"type": "list", "id": "x"})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert "revoked" in closed.value.rcvd.reason


# -- list and subscriptions ------------------------------------------------------------------


async def test_list_shows_connected_charge_points_in_scope_only(ui_gateway):
    async with (
        running_station(ui_gateway.cp_url("CP-LIST"), "ocpp1.6", "CP-LIST"),
        running_station(ui_gateway.cp_url("SCOPE-1"), "ocpp2.0.1", "SCOPE-1"),
    ):
        viewer = await connect(ui_gateway, "viewer")
        answer = await viewer.request({"type": "list"})
        listed = {cp["identity"]: cp for cp in answer["charge_points"]}
        assert set(listed) == {"CP-LIST", "SCOPE-1"}
        assert listed["CP-LIST"]["subprotocol"] == "ocpp1.6"
        assert listed["SCOPE-1"]["security_profile"] == 0
        assert listed["CP-LIST"]["connected_at"] <= time.time()
        scoped = await connect(ui_gateway, "scoped")
        answer = await scoped.request({"type": "list"})
        assert [cp["identity"] for cp in answer["charge_points"]] == ["SCOPE-1"]


async def test_subscription_delivers_connection_and_message_events(ui_gateway):
    viewer = await connect(ui_gateway, "viewer")
    answer = await viewer.request(
        {"type": "subscribe", "identities": ["WATCH-*"], "events": ["connection", "message"]}
    )
    assert answer["type"] == "subscribed"
    async with websockets.connect(ui_gateway.cp_url("WATCH-1"), subprotocols=["ocpp1.6"]) as cp:
        connected = await viewer.next_event()
        assert (connected["event"], connected["identity"]) == ("connected", "WATCH-1")
        await cp.send('[2,"m1","Heartbeat",{}]')
        inbound = await viewer.next_event(lambda e: e["event"] == "message")
        outbound = await viewer.next_event(lambda e: e["event"] == "message")
        assert (inbound["direction"], inbound["frame"]) == ("in", '[2,"m1","Heartbeat",{}]')
        assert outbound["direction"] == "out" and outbound["frame"].startswith('[3,"m1"')
    disconnected = await viewer.next_event()
    assert disconnected["event"] == "disconnected"
    ended = await viewer.request({"type": "unsubscribe", "subscription": answer["subscription"]})
    assert ended["type"] == "unsubscribed"


async def test_out_of_scope_and_unsubscribed_events_are_not_delivered(ui_gateway):
    scoped = await connect(ui_gateway, "scoped")
    await scoped.request({"type": "subscribe", "identities": ["*"], "events": ["connection"]})
    async with websockets.connect(ui_gateway.cp_url("OTHER-1"), subprotocols=["ocpp1.6"]):
        pass
    async with websockets.connect(ui_gateway.cp_url("SCOPE-9"), subprotocols=["ocpp1.6"]):
        event = await scoped.next_event()
    assert event["identity"] == "SCOPE-9", "OTHER-1 is invisible to a SCOPE-* token"


async def test_two_ui_clients_watch_the_same_charge_point(ui_gateway):
    first, second = await connect(ui_gateway, "viewer"), await connect(ui_gateway, "admin")
    for client in (first, second):
        await client.request({"type": "subscribe", "identities": ["TWO"], "events": ["message"]})
    async with websockets.connect(ui_gateway.cp_url("TWO"), subprotocols=["ocpp1.6"]) as cp:
        await cp.send('[2,"t1","Heartbeat",{}]')
        for client in (first, second):
            event = await client.next_event()
            assert event["frame"] == '[2,"t1","Heartbeat",{}]'


async def test_security_events_need_an_admin_token(ui_gateway):
    viewer = await connect(ui_gateway, "viewer")
    refused = await viewer.request(
        {"type": "subscribe", "identities": ["*"], "events": ["security"]}
    )
    assert (refused["type"], refused["code"]) == ("error", "forbidden")


async def test_admin_receives_the_security_event_stream(start_ui):
    from security.passwords import hash_password, password_bytes_v2
    from security.records import ChargePointRecord, InMemoryRecordStore

    records = InMemoryRecordStore(
        [ChargePointRecord("SEC1", 1, hash_password(password_bytes_v2("Right-Password-123")))]
    )
    gateway = await start_ui("admin", records=records, security={"dev_auto_register": False})
    admin = await connect(gateway, "admin")
    await admin.request({"type": "subscribe", "identities": ["*"], "events": ["security"]})
    with pytest.raises(InvalidStatus):
        await websockets.connect(gateway.cp_url("SEC1"), subprotocols=["ocpp1.6"])
    event = await admin.next_event()
    assert (event["event"], event["identity"], event["reason"]) == (
        "security",
        "SEC1",
        "missing_credentials",
    )
    assert event["remote"].startswith("127.0.0.1:")


# -- commands ------------------------------------------------------------------------------


async def test_command_returns_the_charge_points_real_answer(ui_gateway):
    operator = await connect(ui_gateway, "operator")
    async with running_station(ui_gateway.cp_url("CMD1"), "ocpp1.6", "CMD1") as station:
        answer = await operator.request(
            {
                "type": "command",
                "identity": "CMD1",
                "action": "ChangeConfiguration",
                "payload": CHANGE,
            }
        )
        assert station.changed == ("HeartbeatInterval", "60")
        error = await operator.request(
            {"type": "command", "identity": "CMD1", "action": "ClearCache", "payload": {}}
        )
    assert answer["type"] == "result" and answer["outcome"] == "callresult"
    assert answer["payload"] == {"status": "Accepted"}
    assert error["outcome"] == "callerror" and error["error_code"] in {
        "NotImplemented",
        "NotSupported",
    }


@pytest.mark.parametrize(
    ("token", "identity", "action", "payload", "code"),
    [
        ("viewer", "CMD2", "ChangeConfiguration", CHANGE, "forbidden"),
        ("operator", "NOBODY", "ChangeConfiguration", CHANGE, "offline"),
        ("scoped", "CMD2", "ChangeConfiguration", CHANGE, "offline"),  # out of scope = unknown
        ("operator", "CMD2", "ChangeConfiguration", {"key": 1}, "invalid"),
        ("operator", "CMD2", "Heartbeat", {}, "invalid"),  # not a CSMS-initiated action
    ],
)
async def test_command_errors(ui_gateway, token, identity, action, payload, code):
    client = await connect(ui_gateway, token)
    async with running_station(ui_gateway.cp_url("CMD2"), "ocpp1.6", "CMD2"):
        answer = await client.request(
            {"type": "command", "identity": identity, "action": action, "payload": payload}
        )
    assert (answer["type"], answer["code"]) == ("error", code)
    assert answer["reason"]


async def _silent_charge_point(url: str):
    ws = await websockets.connect(url, subprotocols=["ocpp1.6"])
    received: list = []

    async def read():
        async for frame in ws:
            received.append(orjson.loads(frame))

    return ws, asyncio.create_task(read()), received


async def test_command_timeout_and_queueing_behind_an_outstanding_call(ui_gateway):
    operator = await connect(ui_gateway, "operator")
    ws, reader, received = await _silent_charge_point(ui_gateway.cp_url("SLOWCP"))
    try:
        first = asyncio.create_task(
            operator.request(
                {
                    "type": "command",
                    "identity": "SLOWCP",
                    "action": "ChangeConfiguration",
                    "payload": CHANGE,
                    "timeout": 0.5,
                }
            )
        )
        answer = await first
        assert (answer["type"], answer["code"]) == ("error", "timeout")
        # two commands at once: the second waits for the first (one outstanding CALL)
        await operator.send(
            {
                "type": "command",
                "id": "q1",
                "identity": "SLOWCP",
                "action": "ClearCache",
                "payload": {},
            }
        )
        await operator.send(
            {
                "type": "command",
                "id": "q2",
                "identity": "SLOWCP",
                "action": "ClearCache",
                "payload": {},
            }
        )
        for _ in range(100):
            calls = [m for m in received if m[0] == 2 and m[2] == "ClearCache"]
            if calls:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert len([m for m in received if m[0] == 2 and m[2] == "ClearCache"]) == 1
        await ws.send(orjson.dumps([3, calls[0][1], {"status": "Accepted"}]).decode())
        first_answer = await operator.recv()
        assert first_answer["id"] == "q1" and first_answer["payload"] == {"status": "Accepted"}
    finally:
        reader.cancel()
        await ws.close()


async def test_idempotency_key_sends_the_call_once(ui_gateway):
    operator = await connect(ui_gateway, "operator")
    async with running_station(ui_gateway.cp_url("IDEM"), "ocpp1.6", "IDEM") as station:
        calls = []
        original = station.on_change_configuration

        def counting(**kwargs):
            calls.append(kwargs)
            return original(**kwargs)

        station.route_map["ChangeConfiguration"]["_on_action"] = counting
        command = {
            "type": "command",
            "identity": "IDEM",
            "action": "ChangeConfiguration",
            "payload": CHANGE,
            "idempotency_key": "change-1",
        }
        first = await operator.request(command)
        second = await operator.request(command)
    assert first["payload"] == second["payload"] == {"status": "Accepted"}
    assert len(calls) == 1


async def test_commands_are_rate_limited_per_token(start_ui):
    gateway = await start_ui("operator", ui={"commands_per_minute": 2})
    operator = await connect(gateway, "operator")
    codes = []
    for _ in range(3):
        answer = await operator.request(
            {"type": "command", "identity": "NOBODY", "action": "ClearCache", "payload": {}}
        )
        codes.append(answer["code"])
    assert codes == ["offline", "offline", "rate_limited"]


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "request_id", "text"),
    [
        ("not json", None, "not valid JSON"),
        ("[1,2]", None, "JSON object"),
        ('{"type":"explode","id":"e1"}', "e1", "unknown message type"),
        ('{"type":"subscribe","id":"e2","identities":[],"events":["message"]}', "e2", "identities"),
        ('{"type":"command","id":"e3","identity":"CP","action":"Reset"}', "e3", "payload"),
        ('{"type":"list","id":"e4","extra":1}', "e4", "extra"),
        ('{"type":"unsubscribe","id":"e5","subscription":"nope"}', "e5", "no such subscription"),
    ],
)
async def test_bad_messages_get_an_error_with_reason_and_request_id(
    ui_gateway, frame, request_id, text
):
    client = await connect(ui_gateway, "admin")
    await client.ws.send(frame)
    answer = await client.recv()
    assert (answer["type"], answer["code"], answer["id"]) == ("error", "bad_request", request_id)
    assert text in answer["reason"]
    assert (await client.request({"type": "list"}))["type"] == "charge_points", "still serving"


async def test_oversized_message_is_refused_and_the_session_goes_on(start_ui):
    gateway = await start_ui("admin", ui={"max_message_bytes": 1024})
    client = await connect(gateway, "admin")
    await client.send({"type": "list", "id": "x" * 2000})
    answer = await client.recv()
    assert (answer["type"], answer["code"]) == ("error", "too_large")
    assert (await client.request({"type": "list"}))["type"] == "charge_points"


# -- back-pressure -------------------------------------------------------------------------


BULK = "x" * 50_000  # big frames, so that the kernel's socket buffers fill up


async def _round_trips(url: str, count: int, data: str = "") -> float:
    """`count` DataTransfer round trips from a charge point; the time they took."""
    async with websockets.connect(url, subprotocols=["ocpp1.6"]) as cp:
        started = time.monotonic()
        for index in range(count):
            await cp.send(f'[2,"d{index}","DataTransfer",{{"vendorId":"v","data":"{data}"}}]')
            await asyncio.wait_for(cp.recv(), 2)
        return time.monotonic() - started


async def test_slow_ui_client_never_slows_a_charge_point_and_learns_what_it_missed(start_ui):
    gateway = await start_ui("viewer", ui={"queue_size": 10})
    baseline = await _round_trips(gateway.cp_url("FAST0"), 150, BULK)
    client = await connect_silent(gateway, "viewer")
    await client.request({"type": "subscribe", "identities": ["*"], "events": ["message"]})
    # the UI client now reads nothing while the charge point sends 300 x 50 KB of events
    watched = await _round_trips(gateway.cp_url("FAST1"), 150, BULK)
    # a gateway that waited for the UI client would never finish (each round trip times out
    # after 2 s); the bound leaves room for a noisy machine between the two runs
    assert watched < baseline * 5 + 2, (baseline, watched)
    dropped = delivered = 0
    deadline = time.monotonic() + 10
    while delivered + dropped < 300:
        assert time.monotonic() < deadline, (delivered, dropped)
        message = await client.recv(timeout=5)
        dropped += message["count"] if message["type"] == "dropped" else 0
        delivered += message["type"] == "event"
    assert dropped > 0, "the oldest events were dropped and reported"
    assert delivered + dropped == 300, "every event is either delivered or counted as dropped"
    with pytest.raises(TimeoutError):  # and nothing more
        await client.recv(timeout=0.3)
    await client.ws.close()


async def test_overflow_can_disconnect_the_slow_client_instead(start_ui):
    gateway = await start_ui("viewer", ui={"queue_size": 10, "overflow": "disconnect"})
    client = await connect_silent(gateway, "viewer")
    await client.request({"type": "subscribe", "identities": ["*"], "events": ["message"]})
    await _round_trips(gateway.cp_url("FLOOD"), 150, BULK)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(200):
            await client.recv(timeout=2)
    assert closed.value.rcvd.code == 1013
    assert "too slow" in closed.value.rcvd.reason


async def test_charge_points_own_security_notifications_join_the_security_stream(ui_gateway):
    admin = await connect(ui_gateway, "admin")
    await admin.request({"type": "subscribe", "identities": ["*"], "events": ["security"]})
    async with websockets.connect(ui_gateway.cp_url("SEN1"), subprotocols=["ocpp2.0.1"]) as cp:
        await cp.send(
            '[2,"s1","SecurityEventNotification",{"type":"FirmwareUpdated",'
            '"timestamp":"2026-11-24T00:00:00Z","techInfo":"v2.3.1"}]'
        )
        assert (await asyncio.wait_for(cp.recv(), 2)).startswith('[3,"s1"')
        event = await admin.next_event()
    assert (event["identity"], event["reason"]) == ("SEN1", "charge_point_reported")
    assert event["detail"] == "FirmwareUpdated: v2.3.1"


async def test_revoked_token_of_a_silent_subscriber_is_disconnected(start_ui):
    gateway = await start_ui("admin", ui={"token_check_seconds": 0.2})
    client = await connect(gateway, "admin")
    await client.request({"type": "subscribe", "identities": ["*"], "events": ["message"]})
    record = next(t for t in gateway.tokens.all() if t.name == "admin")
    gateway.tokens.revoke(record.token_id)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(20):
            await client.recv(timeout=2)
    assert "revoked" in closed.value.rcvd.reason


async def test_subscriptions_per_connection_are_bounded(ui_gateway):
    client = await connect(ui_gateway, "viewer")
    answers = [
        await client.request({"type": "subscribe", "identities": ["*"], "events": ["message"]})
        for _ in range(33)
    ]
    assert all(a["type"] == "subscribed" for a in answers[:32])
    assert (answers[32]["type"], answers[32]["code"]) == ("error", "bad_request")


async def test_drain_closes_ui_clients_with_1001(ui_gateway):
    client = await connect(ui_gateway, "viewer")
    await ui_gateway.server.gateway.drain(1.0)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv(timeout=3)
    assert closed.value.rcvd.code == 1001
