"""Every malformed or unwanted message gets the spec's answer and the session survives.

Raw WebSocket clients send exact frames; answers are compared as parsed JSON.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets

HEARTBEAT_16 = '[2,"hb-after","Heartbeat",{}]'


async def _exchange(ws, frame: str | bytes, timeout: float = 2.0) -> list:
    await ws.send(frame)
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def _still_alive(ws, subprotocol: str) -> None:
    """The session still answers a valid Heartbeat after the bad input."""
    answer = await _exchange(ws, HEARTBEAT_16)
    assert answer[0] == 3 and answer[1] == "hb-after", f"{subprotocol}: {answer}"
    assert "currentTime" in answer[2]


BAD_FRAMES = [
    # (frame, subprotocol, expected [type, id, code]) - OCPP-J 2.0.1/2.1 part 4 sections 4.1-4.3
    ("not json", "ocpp2.0.1", [4, "-1", "RpcFrameworkError"]),
    ('{"a": 1}', "ocpp2.0.1", [4, "-1", "RpcFrameworkError"]),
    ("[]", "ocpp2.0.1", [4, "-1", "RpcFrameworkError"]),
    ('["2","id1","Heartbeat",{}]', "ocpp2.0.1", [4, "id1", "RpcFrameworkError"]),
    ('[2,17,"Heartbeat",{}]', "ocpp2.0.1", [4, "-1", "RpcFrameworkError"]),
    ('[2,"' + "x" * 37 + '","Heartbeat",{}]', "ocpp2.0.1", [4, "-1", "RpcFrameworkError"]),
    ('[2,"id2","Heartbeat"]', "ocpp2.0.1", [4, "id2", "RpcFrameworkError"]),
    ('[2,"id3","Heartbeat",{},{}]', "ocpp2.0.1", [4, "id3", "RpcFrameworkError"]),
    ('[2,"id4",7,{}]', "ocpp2.0.1", [4, "id4", "RpcFrameworkError"]),
    ('[2,"id5","Heartbeat",[]]', "ocpp2.0.1", [4, "id5", "FormatViolation"]),
    ('[7,"id6","Heartbeat",{}]', "ocpp2.0.1", [4, "id6", "MessageTypeNotSupported"]),
    (
        '[6,"id7","NotifyPeriodicEventStream",{}]',
        "ocpp2.0.1",
        [4, "id7", "MessageTypeNotSupported"],
    ),
    ('[7,"id8","Heartbeat",{}]', "ocpp2.1", [4, "id8", "MessageTypeNotSupported"]),
    ('[2,"id9","FlyToTheMoon",{}]', "ocpp2.0.1", [4, "id9", "NotImplemented"]),
    ('[2,"id10","GetVariables",{"getVariableData":[]}]', "ocpp2.0.1", [4, "id10", "NotSupported"]),
    (
        '[2,"id11","BootNotification",{"reason":"PowerUp"}]',
        "ocpp2.0.1",
        [4, "id11", "OccurrenceConstraintViolation"],
    ),
    (
        '[2,"id12","BootNotification",{"reason":"Bored","chargingStation":{"model":"m",'
        '"vendorName":"v"}}]',
        "ocpp2.0.1",
        [4, "id12", "PropertyConstraintViolation"],
    ),
    (
        '[2,"id13","StatusNotification",{"timestamp":"2024-01-01T00:00:00Z",'
        '"connectorStatus":"Available","evseId":"one","connectorId":1}]',
        "ocpp2.0.1",
        [4, "id13", "TypeConstraintViolation"],
    ),
    ('[2,"id14","Heartbeat",{"extra":1}]', "ocpp2.0.1", [4, "id14", "FormatViolation"]),
    # OCPP 1.6 names its codes differently (OCPP-J 1.6 section 4.2.3)
    ("not json", "ocpp1.6", [4, "-1", "FormationViolation"]),
    (
        '[2,"a1","BootNotification",{"chargePointVendor":"v"}]',
        "ocpp1.6",
        [4, "a1", "OccurenceConstraintViolation"],
    ),
    (
        '[2,"a2","BootNotification",{"chargePointVendor":"'
        + "v" * 21
        + '","chargePointModel":"m"}]',
        "ocpp1.6",
        [4, "a2", "PropertyConstraintViolation"],
    ),
    ('[2,"a3","RemoteStartTransaction",{"idTag":"x"}]', "ocpp1.6", [4, "a3", "NotSupported"]),
    ('[2,"a4","TransactionEvent",{}]', "ocpp1.6", [4, "a4", "NotImplemented"]),
    ('[5,"a5","x","y",{}]', "ocpp1.6", [4, "a5", "FormationViolation"]),
]


@pytest.mark.parametrize(("frame", "subprotocol", "expected"), BAD_FRAMES)
async def test_bad_frame_gets_the_specs_callerror_and_session_survives(
    gateway_server, frame, subprotocol, expected
):
    async with websockets.connect(gateway_server.url("BAD1"), subprotocols=[subprotocol]) as ws:
        answer = await _exchange(ws, frame)
        assert answer[:3] == expected
        assert isinstance(answer[3], str) and answer[3], "errorDescription says why"
        assert answer[4] == {}
        assert len(answer) == 5
        await _still_alive(ws, subprotocol)


async def test_callerror_is_serialised_compactly(gateway_server):
    async with websockets.connect(gateway_server.url("BAD2"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send("garbage")
        raw = await asyncio.wait_for(ws.recv(), 2)
    assert raw.startswith('[4,"-1","RpcFrameworkError","')
    assert raw.endswith('",{}]')
    assert ", " not in raw.split('"')[0]


async def test_binary_frame_is_refused_with_its_message_id(gateway_server):
    async with websockets.connect(gateway_server.url("BAD3"), subprotocols=["ocpp2.0.1"]) as ws:
        answer = await _exchange(ws, b'[2,"bin1","Heartbeat",{}]')
        assert answer[:3] == [4, "bin1", "RpcFrameworkError"]
        await _still_alive(ws, "ocpp2.0.1")


@pytest.mark.parametrize(
    "frame",
    [
        '[3,"nobody-asked",{}]',
        '[4,"nobody-asked","GenericError","",{}]',
        '[3,"x"]',
        '[4,"x","only-three"]',
    ],
)
async def test_unknown_or_broken_result_is_dropped_without_answer(gateway_server, frame):
    """A CALLRESULT/CALLERROR is never answered with a CALLERROR (OCPP-J 4.2.3); it is logged."""
    async with websockets.connect(gateway_server.url("BAD4"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(frame)
        answer = await _exchange(ws, HEARTBEAT_16)
        assert answer[:2] == [3, "hb-after"], "the heartbeat's answer is the first thing received"


async def test_send_message_is_never_answered(gateway_server):
    """OCPP-J 2.1 4.2.4: the receiver SHALL NOT respond to a SEND, valid or not."""
    async with websockets.connect(gateway_server.url("BAD5"), subprotocols=["ocpp2.1"]) as ws:
        await ws.send(
            '[6,"s1","NotifyPeriodicEventStream",{"id":1,"pending":0,'
            '"basetime":"2024-08-27T12:30:40Z","data":[{"t":0,"v":"230.4"}]}]'
        )
        await ws.send('[6,"s2","NotifyPeriodicEventStream",{"broken":true}]')
        await ws.send('[6,"s3","NoSuchStream",{}]')
        answer = await _exchange(ws, HEARTBEAT_16)
        assert answer[:2] == [3, "hb-after"]


async def test_session_that_keeps_sending_garbage_is_closed_with_1008(start_gateway):
    server = await start_gateway(limits={"max_bad_messages": 3})
    async with websockets.connect(server.url("BAD6"), subprotocols=["ocpp2.0.1"]) as ws:
        for _ in range(4):
            await ws.send("garbage")
        answers = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                answers.append(await asyncio.wait_for(ws.recv(), 2))
    assert len(answers) == 4, "each bad message is still answered"
    assert closed.value.rcvd.code == 1008
    assert "invalid" in closed.value.rcvd.reason


async def test_lenient_mode_passes_schema_violations_on(start_gateway):
    server = await start_gateway(ocpp={"validation": "lenient"})
    async with websockets.connect(server.url("LEN1"), subprotocols=["ocpp1.6"]) as ws:
        # chargePointVendor over its 20-character limit: strict would refuse it.
        answer = await _exchange(
            ws,
            '[2,"l1","BootNotification",{"chargePointVendor":"'
            + "v" * 25
            + '","chargePointModel":"m"}]',
        )
        assert answer[0] == 3 and answer[2]["status"] == "Accepted"


async def test_duplicate_inflight_message_id_is_refused(gateway_server):
    async with websockets.connect(gateway_server.url("DUP1"), subprotocols=["ocpp1.6"]) as ws:
        first = await _exchange(ws, '[2,"same","Heartbeat",{}]')
        second = await _exchange(ws, '[2,"same","Heartbeat",{}]')
    # The first is answered before the second arrives, so both succeed: ids may repeat once done.
    assert first[0] == 3 and second[0] == 3
