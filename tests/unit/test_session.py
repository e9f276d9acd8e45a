"""The sans-IO OCPP-J session: what each inbound frame becomes, and the frames it builds.

References: OCPP-J 1.6 section 4, OCPP 2.0.1 part 4 / OCPP 2.1 part 4 section 4 (RPC framework),
OCPP 2.0.1 part 2 use cases B02/B03 and part 6 test case TC_B_30_CSMS (boot gating).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gateway.ocppj.codec import Call, CallError, CallResult, Send
from gateway.ocppj.errors import RpcErrorKind
from gateway.session import (
    BootRecord,
    Dispatch,
    Drop,
    Notify,
    OcppSession,
    Reply,
    Resolve,
)
from gateway.validation import SchemaViolation
from gateway.versions import VERSIONS

SUBPROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
V2 = ("ocpp2.0.1", "ocpp2.1")
TS = "2025-03-14T09:26:41.120Z"

BOOT = {
    "ocpp1.6": {"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger"},
    "ocpp2.0.1": {
        "reason": "PowerUp",
        "chargingStation": {"model": "SingleSocketCharger", "vendorName": "VendorX"},
    },
}
BOOT["ocpp2.1"] = BOOT["ocpp2.0.1"]
STATUS = {
    "ocpp1.6": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "ocpp2.0.1": {"timestamp": TS, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
}
STATUS["ocpp2.1"] = STATUS["ocpp2.0.1"]
RESET = {"ocpp1.6": {"type": "Soft"}, "ocpp2.0.1": {"type": "Immediate"}}
RESET["ocpp2.1"] = RESET["ocpp2.0.1"]
# A request the CSMS sends, which a charge point must not send.
CSMS_ONLY = {
    "ocpp1.6": "RemoteStartTransaction",
    "ocpp2.0.1": "RequestStartTransaction",
    "ocpp2.1": "RequestStartTransaction",
}
OCCURRENCE = {
    "ocpp1.6": "OccurenceConstraintViolation",
    "ocpp2.0.1": "OccurrenceConstraintViolation",
    "ocpp2.1": "OccurrenceConstraintViolation",
}
FORMAT = {
    "ocpp1.6": "FormationViolation",
    "ocpp2.0.1": "FormatViolation",
    "ocpp2.1": "FormatViolation",
}
RPC_FRAMEWORK = {
    "ocpp1.6": "FormationViolation",
    "ocpp2.0.1": "RpcFrameworkError",
    "ocpp2.1": "RpcFrameworkError",
}
PERIODIC = {"id": 1, "pending": 0, "basetime": TS, "data": [{"t": 1.0, "v": "230.4"}]}


def make(subprotocol: str = "ocpp2.0.1", status: str | None = None, **kwargs: Any) -> OcppSession:
    return OcppSession("CP-1", VERSIONS[subprotocol], BootRecord(status), **kwargs)


def call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return json.dumps([2, message_id, action, payload])


def boot_response(status: str) -> dict[str, Any]:
    return {"currentTime": TS, "interval": 300, "status": status}


def error_frame(frame: str) -> list[Any]:
    """A CALLERROR frame decoded, after checking it is compact."""
    assert ", " not in frame[:4]
    decoded = json.loads(frame)
    assert len(decoded) == 5
    return decoded


def assert_reply(outcome: object, message_id: str, code: str) -> Reply:
    assert isinstance(outcome, Reply), outcome
    assert (outcome.message_id, outcome.error_code) == (message_id, code)
    assert error_frame(outcome.frame) == [4, message_id, code, outcome.reason[:255], {}]
    assert outcome.reason
    return outcome


# -- CALLs from the charge point ---------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_valid_call_is_dispatched(subprotocol: str) -> None:
    session = make(subprotocol)
    outcome = session.receive(call("m1", "BootNotification", BOOT[subprotocol]))
    assert outcome == Dispatch(Call("m1", "BootNotification", BOOT[subprotocol]), None)
    assert session.bad_messages == 0


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_data_transfer_goes_both_ways_and_is_dispatched(subprotocol: str) -> None:
    payload = {"vendorId": "VendorX"}
    outcome = make(subprotocol).receive(call("m1", "DataTransfer", payload))
    assert outcome == Dispatch(Call("m1", "DataTransfer", payload))


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_unknown_action_is_answered_not_implemented(subprotocol: str) -> None:
    """OCPP-J 4.3: NotImplemented - requested Action is not known by receiver."""
    session = make(subprotocol)
    outcome = assert_reply(session.receive(call("m1", "Teleport", {})), "m1", "NotImplemented")
    assert "Teleport" in outcome.reason
    assert session.bad_messages == 1


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_action_names_are_case_sensitive(subprotocol: str) -> None:
    """OCPP-J 2.x 4.2.1: the Action field SHALL contain a case-sensitive string."""
    assert_reply(make(subprotocol).receive(call("m1", "heartbeat", {})), "m1", "NotImplemented")


def test_request_suffixed_action_is_not_known() -> None:
    """OCPP-J 2.x 4.1.6: the Action is the message name without the "Request" suffix."""
    outcome = make("ocpp2.0.1").receive(call("m1", "HeartbeatRequest", {}))
    assert_reply(outcome, "m1", "NotImplemented")


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_csms_action_sent_by_a_charge_point_is_answered_not_supported(subprotocol: str) -> None:
    """OCPP-J 4.3: NotSupported - requested Action is recognized but not supported."""
    action = CSMS_ONLY[subprotocol]
    version = VERSIONS[subprotocol]
    assert action in version.csms_actions and action not in version.charge_point_actions
    session = make(subprotocol)
    outcome = assert_reply(session.receive(call("m1", action, {})), "m1", "NotSupported")
    assert action in outcome.reason
    assert session.bad_messages == 1


def test_very_long_unknown_action_is_cut_in_the_reason() -> None:
    outcome = make().receive(call("m1", "X" * 5000, {}))
    assert isinstance(outcome, Reply)
    assert len(outcome.reason) < 200


def violation(
    case: str, subprotocol: str, action: str, payload: dict[str, Any], code: str, field: str
) -> Any:
    """One schema violation case: the error code it maps to and text its reason must contain."""
    return pytest.param(subprotocol, action, payload, code, field, id=f"{subprotocol}-{case}")


SCHEMA_VIOLATIONS = [
    violation(
        "missing-required",
        "ocpp1.6",
        "BootNotification",
        {"chargePointVendor": "V"},
        "OccurenceConstraintViolation",
        "chargePointModel",
    ),
    *[
        violation(
            "missing-required",
            s,
            "BootNotification",
            {"reason": "PowerUp"},
            "OccurrenceConstraintViolation",
            "chargingStation",
        )
        for s in V2
    ],
    violation(
        "wrong-type",
        "ocpp1.6",
        "BootNotification",
        {"chargePointVendor": 5, "chargePointModel": "M"},
        "TypeConstraintViolation",
        "chargePointVendor",
    ),
    *[
        violation(
            "wrong-type",
            s,
            "StatusNotification",
            {**STATUS[s], "evseId": "one"},
            "TypeConstraintViolation",
            "evseId",
        )
        for s in V2
    ],
    violation(
        "enum",
        "ocpp1.6",
        "StatusNotification",
        {**STATUS["ocpp1.6"], "status": "Sleeping"},
        "PropertyConstraintViolation",
        "status",
    ),
    *[
        violation(
            "enum",
            s,
            "BootNotification",
            {**BOOT[s], "reason": "Bored"},
            "PropertyConstraintViolation",
            "reason",
        )
        for s in V2
    ],
    violation(
        "max-length",
        "ocpp1.6",
        "BootNotification",
        {"chargePointVendor": "V" * 21, "chargePointModel": "M"},
        "PropertyConstraintViolation",
        "chargePointVendor",
    ),
    *[
        violation(
            "max-length",
            s,
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "M" * 21, "vendorName": "V"}},
            "PropertyConstraintViolation",
            "model",
        )
        for s in V2
    ],
    *[
        violation(
            "extra-property",
            s,
            "BootNotification",
            {**BOOT[s], "colour": "red"},
            FORMAT[s],
            "colour",
        )
        for s in SUBPROTOCOLS
    ],
]


@pytest.mark.parametrize(("subprotocol", "action", "payload", "code", "field"), SCHEMA_VIOLATIONS)
def test_schema_violation_in_strict_mode_is_answered_with_the_mapped_code(
    subprotocol: str, action: str, payload: dict[str, Any], code: str, field: str
) -> None:
    """OCPP-J 4.1.7 / 4.3: an invalid message is answered with a CALLERROR whose code says what
    is wrong (occurrence, type, property constraint, format)."""
    session = make(subprotocol)
    outcome = assert_reply(session.receive(call("m1", action, payload)), "m1", code)
    assert field in outcome.reason
    assert session.bad_messages == 1


@pytest.mark.parametrize(("subprotocol", "action", "payload", "code", "field"), SCHEMA_VIOLATIONS)
def test_schema_violation_in_lenient_mode_is_dispatched_with_the_violation(
    subprotocol: str, action: str, payload: dict[str, Any], code: str, field: str
) -> None:
    outcome = make(subprotocol, validation="lenient").receive(call("m1", action, payload))
    assert isinstance(outcome, Dispatch)
    assert outcome.call == Call("m1", action, payload)
    assert isinstance(outcome.violation, SchemaViolation)
    assert VERSIONS[subprotocol].error_code(outcome.violation.kind) == code
    assert field in outcome.violation.reason


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_payload_that_is_not_an_object_is_a_format_violation(subprotocol: str) -> None:
    outcome = make(subprotocol).receive('[2,"m1","Heartbeat",[]]')
    assert_reply(outcome, "m1", FORMAT[subprotocol])


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_null_payload_is_an_empty_object(subprotocol: str) -> None:
    outcome = make(subprotocol).receive('[2,"m1","Heartbeat",null]')
    assert outcome == Dispatch(Call("m1", "Heartbeat", {}))


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_duplicate_in_flight_message_id_is_refused(subprotocol: str) -> None:
    """OCPP-J 4.2.3: a CALLERROR when "an existing call with the same unique identifier is being
    handled already"."""
    session = make(subprotocol)
    first = session.receive(call("m1", "Heartbeat", {}))
    assert isinstance(first, Dispatch)
    outcome = session.receive(call("m1", "Heartbeat", {}))
    assert_reply(outcome, "m1", RPC_FRAMEWORK[subprotocol])
    assert session.bad_messages == 1
    # Another id is unaffected.
    assert isinstance(session.receive(call("m2", "Heartbeat", {})), Dispatch)


def test_message_id_may_be_reused_once_answered() -> None:
    session = make()
    first = session.receive(call("m1", "Heartbeat", {}))
    assert isinstance(first, Dispatch)
    session.answer(first.call, {"currentTime": TS})
    assert isinstance(session.receive(call("m1", "Heartbeat", {})), Dispatch)


def test_message_id_may_be_reused_once_answered_with_an_error() -> None:
    session = make()
    first = session.receive(call("m1", "Heartbeat", {}))
    assert isinstance(first, Dispatch)
    frame = session.answer_error(first.call, RpcErrorKind.INTERNAL, "backend down")
    assert frame == '[4,"m1","InternalError","backend down",{}]'
    assert isinstance(session.receive(call("m1", "Heartbeat", {})), Dispatch)


def test_refused_call_does_not_occupy_its_message_id() -> None:
    session = make()
    assert isinstance(session.receive(call("m1", "BootNotification", {})), Reply)
    assert isinstance(session.receive(call("m1", "Heartbeat", {})), Dispatch)


# -- unreadable frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize(
    "frame", ["not json", "{}", "[]", '[2,"","Heartbeat",{}]', f'[2,"{"x" * 37}","Heartbeat",{{}}]']
)
def test_call_with_unreadable_message_id_is_answered_with_minus_one(
    subprotocol: str, frame: str
) -> None:
    """OCPP-J 2.0.1/2.1 part 4, 4.2.3: when the MessageId cannot be read, the CALLERROR SHALL
    contain "-1" as MessageId (2.x RpcFrameworkError; 1.6 FormationViolation)."""
    session = make(subprotocol)
    assert_reply(session.receive(frame), "-1", RPC_FRAMEWORK[subprotocol])
    assert session.bad_messages == 1


def test_invalid_utf8_is_answered_with_minus_one() -> None:
    outcome = make().receive(b"\xff\xfe[2")
    assert_reply(outcome, "-1", "RpcFrameworkError")


def test_binary_frame_holding_a_call_is_answered_with_its_message_id() -> None:
    outcome = make().receive(b'[2,"m1","Heartbeat",{}]')
    assert_reply(outcome, "m1", "RpcFrameworkError")


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize(
    "frame", ['[3,"m1",[]]', '[3,"m1"]', '[4,"m1","GenericError"]', '[4,"m1",1,"d",{}]']
)
def test_broken_result_or_error_is_dropped_never_answered(subprotocol: str, frame: str) -> None:
    """OCPP-J 4.2.3: a CALLERROR answers a CALL only."""
    session = make(subprotocol)
    outcome = session.receive(frame)
    assert isinstance(outcome, Drop)
    assert outcome.message_id == "m1"
    assert session.bad_messages == 1


@pytest.mark.parametrize("frame_type", [5, 6, 7])
def test_unknown_message_type_in_2_0_1_is_answered_message_type_not_supported(
    frame_type: int,
) -> None:
    """OCPP 2.0.1 part 4, 4.4: a message with an unknown message type SHALL be answered with a
    CALLERROR with errorCode MessageTypeNotSupported."""
    outcome = make("ocpp2.0.1").receive(f'[{frame_type},"m1","X",{{}}]')
    assert_reply(outcome, "m1", "MessageTypeNotSupported")


@pytest.mark.parametrize("frame", ['[7,""]', "[7]", "[7,null,{}]"])
def test_unknown_message_type_in_2_0_1_without_readable_id_is_answered_with_minus_one(
    frame: str,
) -> None:
    """OCPP 2.0.1 part 4, 4.4 (unknown message type SHALL be answered with a CALLERROR) and 4.2.3
    ("-1" when the MessageId cannot be read)."""
    outcome = make("ocpp2.0.1").receive(frame)
    assert isinstance(outcome, Reply), outcome
    assert outcome.message_id == "-1"
    assert outcome.error_code in {"MessageTypeNotSupported", "RpcFrameworkError"}


# -- boot gating (B02 Pending, B03 Rejected) ----------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("status", ["Pending", "Rejected"])
@pytest.mark.parametrize("action", ["StatusNotification", "Heartbeat"])
def test_tc_b_30_csms_pending_or_rejected_charge_point_gets_security_error(
    subprotocol: str, status: str, action: str
) -> None:
    """TC_B_30_CSMS (B02.FR.09, B03.FR.07): while Pending or Rejected, a CALL that is not a
    BootNotification (nor triggered, when Pending) is answered with CALLERROR SecurityError."""
    payload = STATUS[subprotocol] if action == "StatusNotification" else {}
    session = make(subprotocol, status)
    outcome = assert_reply(session.receive(call("m1", action, payload)), "m1", "SecurityError")
    assert status in outcome.reason


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("status", ["Pending", "Rejected", None])
def test_boot_notification_is_always_dispatched(subprotocol: str, status: str | None) -> None:
    """B02.FR.09 / B03.FR.07 forbid every CALL but the BootNotificationRequest."""
    session = make(subprotocol, status, gate_unknown_boot=True)
    outcome = session.receive(call("m1", "BootNotification", BOOT[subprotocol]))
    assert outcome == Dispatch(Call("m1", "BootNotification", BOOT[subprotocol]))


def test_unknown_boot_status_is_not_gated_by_default() -> None:
    assert isinstance(make(status=None).receive(call("m1", "Heartbeat", {})), Dispatch)


def test_unknown_boot_status_is_gated_with_gate_unknown_boot() -> None:
    outcome = make(status=None, gate_unknown_boot=True).receive(call("m1", "Heartbeat", {}))
    reply = assert_reply(outcome, "m1", "SecurityError")
    assert "unknown" in reply.reason


@pytest.mark.parametrize("gate_unknown_boot", [False, True])
def test_accepted_charge_point_is_never_gated(gate_unknown_boot: bool) -> None:
    session = make(status="Accepted", gate_unknown_boot=gate_unknown_boot)
    assert isinstance(session.receive(call("m1", "Heartbeat", {})), Dispatch)


def test_gating_comes_before_schema_validation() -> None:
    """A gated charge point learns it must boot, not that its payload is wrong."""
    outcome = make(status="Rejected").receive(call("m1", "StatusNotification", {}))
    assert_reply(outcome, "m1", "SecurityError")


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_b02_pending_allows_status_notification_triggered_by_trigger_message(
    subprotocol: str,
) -> None:
    """TC_B_30_CSMS / B02.FR.09: while Pending, a message triggered by TriggerMessageRequest is
    allowed; anything else stays refused."""
    session = make(subprotocol, "Pending")
    started = session.begin_call("TriggerMessage", {"requestedMessage": "StatusNotification"})
    assert isinstance(started, tuple)
    outcome = session.receive(call("m1", "StatusNotification", STATUS[subprotocol]))
    assert outcome == Dispatch(Call("m1", "StatusNotification", STATUS[subprotocol]))
    assert_reply(session.receive(call("m2", "Heartbeat", {})), "m2", "SecurityError")


@pytest.mark.parametrize("subprotocol", V2)
def test_b02_pending_allows_notify_report_after_get_base_report(subprotocol: str) -> None:
    """TC_B_30_CSMS: GetBaseReportRequest invites the NotifyReportRequest while Pending."""
    session = make(subprotocol, "Pending")
    started = session.begin_call("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
    assert isinstance(started, tuple)
    payload = {"requestId": 1, "generatedAt": TS, "seqNo": 0}
    assert isinstance(session.receive(call("m1", "NotifyReport", payload)), Dispatch)


def test_1_6_pending_allows_sign_certificate_after_extended_trigger_message() -> None:
    """1.6 security whitepaper: ExtendedTriggerMessage(SignChargePointCertificate) asks for a
    SignCertificate.req."""
    session = make("ocpp1.6", "Pending")
    started = session.begin_call(
        "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
    )
    assert isinstance(started, tuple)
    assert isinstance(session.receive(call("m1", "SignCertificate", {"csr": "x"})), Dispatch)


def test_trigger_message_does_not_open_the_gate_when_rejected() -> None:
    """B03.FR.07: while Rejected, only BootNotification is allowed."""
    session = make("ocpp2.0.1", "Rejected")
    assert isinstance(
        session.begin_call("TriggerMessage", {"requestedMessage": "StatusNotification"}), tuple
    )
    outcome = session.receive(call("m1", "StatusNotification", STATUS["ocpp2.0.1"]))
    assert_reply(outcome, "m1", "SecurityError")


def test_invitations_end_when_the_charge_point_is_accepted_and_pending_again() -> None:
    session = make("ocpp2.0.1", "Pending")
    message_id, _ = session.begin_call("TriggerMessage", {"requestedMessage": "StatusNotification"})
    session.end_call(message_id)
    for status in ("Accepted", "Pending"):
        boot = session.receive(call(f"b-{status}", "BootNotification", BOOT["ocpp2.0.1"]))
        assert isinstance(boot, Dispatch)
        session.answer(boot.call, boot_response(status))
    outcome = session.receive(call("m1", "StatusNotification", STATUS["ocpp2.0.1"]))
    assert_reply(outcome, "m1", "SecurityError")


# -- answers to the charge point -----------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
def test_answering_boot_notification_updates_the_boot_record(subprotocol: str, status: str) -> None:
    boot = BootRecord()
    session = OcppSession("CP-1", VERSIONS[subprotocol], boot)
    dispatched = session.receive(call("m1", "BootNotification", BOOT[subprotocol]))
    assert isinstance(dispatched, Dispatch)
    frame, violation = session.answer(dispatched.call, boot_response(status))
    assert frame == (f'[3,"m1",{{"currentTime":"{TS}","interval":300,"status":"{status}"}}]')
    assert violation is None
    assert boot.status == status
    assert session.boot is boot


def test_boot_record_decides_gating_right_after_the_boot_answer() -> None:
    session = make("ocpp1.6")
    boot = session.receive(call("b1", "BootNotification", BOOT["ocpp1.6"]))
    assert isinstance(boot, Dispatch)
    session.answer(boot.call, boot_response("Rejected"))
    assert_reply(session.receive(call("m1", "Heartbeat", {})), "m1", "SecurityError")


def test_answering_another_action_with_a_status_leaves_the_boot_record_alone() -> None:
    session = make(status="Accepted")
    dispatched = session.receive(call("m1", "DataTransfer", {"vendorId": "VendorX"}))
    assert isinstance(dispatched, Dispatch)
    frame, violation = session.answer(dispatched.call, {"status": "Rejected"})
    assert frame == '[3,"m1",{"status":"Rejected"}]'
    assert violation is None
    assert session.boot.status == "Accepted"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_invalid_response_in_strict_mode_becomes_internal_error(subprotocol: str) -> None:
    """The gateway never sends a response that breaks the schema: OCPP-J 4.3 InternalError."""
    session = make(subprotocol)
    dispatched = session.receive(call("m1", "BootNotification", BOOT[subprotocol]))
    assert isinstance(dispatched, Dispatch)
    frame, violation = session.answer(dispatched.call, {"status": "Accepted"})
    decoded = error_frame(frame)
    assert decoded[:3] == [4, "m1", "InternalError"]
    assert "BootNotification" in decoded[3]
    assert decoded[4] == {}
    assert isinstance(violation, SchemaViolation)
    assert session.boot.status is None  # the charge point was not told any status


def test_invalid_response_in_lenient_mode_is_sent_with_the_violation() -> None:
    session = make(validation="lenient")
    dispatched = session.receive(call("m1", "Heartbeat", {}))
    assert isinstance(dispatched, Dispatch)
    frame, violation = session.answer(dispatched.call, {})
    assert frame == '[3,"m1",{}]'
    assert isinstance(violation, SchemaViolation)
    assert violation.kind is RpcErrorKind.OCCURRENCE


# -- the gateway's CALLs -------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_begin_call_returns_a_uuid_message_id_and_a_compact_frame(subprotocol: str) -> None:
    session = make(subprotocol)
    started = session.begin_call("Reset", RESET[subprotocol])
    assert isinstance(started, tuple)
    message_id, frame = started
    assert len(message_id) == 36
    assert str(uuid.UUID(message_id)) == message_id
    reset_type = RESET[subprotocol]["type"]
    assert frame == f'[2,"{message_id}","Reset",{{"type":"{reset_type}"}}]'
    assert (session.pending_id, session.pending_action) == (message_id, "Reset")


def test_begin_call_ids_are_unique() -> None:
    session = make()
    ids = set()
    for _ in range(20):
        message_id, _ = session.begin_call("Reset", RESET["ocpp2.0.1"])
        session.end_call(message_id)
        ids.add(message_id)
    assert len(ids) == 20


def test_begin_call_with_invalid_payload_in_strict_mode_is_a_schema_violation() -> None:
    session = make()
    outcome = session.begin_call("Reset", {"type": "Sideways"})
    assert isinstance(outcome, SchemaViolation)
    assert outcome.kind is RpcErrorKind.PROPERTY
    assert session.pending_id is None


def test_begin_call_with_invalid_payload_in_lenient_mode_is_sent() -> None:
    session = make(validation="lenient")
    outcome = session.begin_call("Reset", {})
    assert isinstance(outcome, tuple)
    assert outcome[1].endswith(',"Reset",{}]')


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("action", ["Heartbeat", "BootNotification", "Teleport"])
def test_begin_call_of_an_action_the_csms_does_not_send_is_not_supported(
    subprotocol: str, action: str
) -> None:
    session = make(subprotocol)
    outcome = session.begin_call(action, {})
    assert isinstance(outcome, SchemaViolation)
    assert outcome.kind is RpcErrorKind.NOT_SUPPORTED
    assert session.pending_id is None


def test_second_begin_call_while_one_is_outstanding_raises() -> None:
    """OCPP-J 4.1.1: no CALL is sent until all earlier CALLs are answered or timed out."""
    session = make()
    message_id, _ = session.begin_call("Reset", RESET["ocpp2.0.1"])
    with pytest.raises(RuntimeError):
        session.begin_call("Reset", RESET["ocpp2.0.1"])
    assert session.pending_id == message_id


def test_end_call_clears_the_outstanding_call() -> None:
    session = make()
    message_id, _ = session.begin_call("Reset", RESET["ocpp2.0.1"])
    session.end_call("another-id")
    assert session.pending_id == message_id
    session.end_call(message_id)
    assert (session.pending_id, session.pending_action) == (None, None)
    assert isinstance(session.begin_call("Reset", RESET["ocpp2.0.1"]), tuple)


# -- results of the gateway's CALLs --------------------------------------------------------------


def started(session: OcppSession, subprotocol: str = "ocpp2.0.1") -> str:
    outcome = session.begin_call("Reset", RESET[subprotocol])
    assert isinstance(outcome, tuple)
    return outcome[0]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_matching_callresult_resolves_the_outstanding_call(subprotocol: str) -> None:
    session = make(subprotocol)
    message_id = started(session, subprotocol)
    outcome = session.receive(json.dumps([3, message_id, {"status": "Accepted"}]))
    assert outcome == Resolve(
        message_id, "Reset", CallResult(message_id, {"status": "Accepted"}), None, None
    )
    assert session.bad_messages == 0


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1"])
def test_invalid_callresult_in_strict_mode_resolves_with_the_violation(subprotocol: str) -> None:
    """Before 2.1 there is no CALLRESULTERROR: the caller gets the violation, nothing is sent."""
    session = make(subprotocol)
    message_id = started(session, subprotocol)
    outcome = session.receive(json.dumps([3, message_id, {"status": "Maybe"}]))
    assert isinstance(outcome, Resolve)
    assert outcome.result == CallResult(message_id, {"status": "Maybe"})
    assert isinstance(outcome.violation, SchemaViolation)
    assert outcome.violation.kind is RpcErrorKind.PROPERTY
    assert outcome.frame is None
    assert session.bad_messages == 1


def test_invalid_callresult_in_2_1_strict_mode_is_answered_with_callresulterror() -> None:
    """OCPP-J 2.1 4.2.3: a CALLRESULTERROR is sent back on receipt of a CALLRESULT that
    contains errors."""
    session = make("ocpp2.1")
    message_id = started(session, "ocpp2.1")
    outcome = session.receive(json.dumps([3, message_id, {}]))
    assert isinstance(outcome, Resolve)
    assert isinstance(outcome.violation, SchemaViolation)
    assert outcome.frame is not None
    decoded = json.loads(outcome.frame)
    assert decoded == [5, message_id, "OccurrenceConstraintViolation", decoded[3], {}]
    assert "status" in decoded[3]
    assert " " not in outcome.frame.split(decoded[3])[0]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_invalid_callresult_in_lenient_mode_resolves_with_the_violation_only(
    subprotocol: str,
) -> None:
    session = make(subprotocol, validation="lenient")
    message_id = started(session, subprotocol)
    outcome = session.receive(json.dumps([3, message_id, {}]))
    assert isinstance(outcome, Resolve)
    assert isinstance(outcome.violation, SchemaViolation)
    assert outcome.frame is None


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_unknown_callresult_is_dropped(subprotocol: str) -> None:
    session = make(subprotocol)
    started(session, subprotocol)
    outcome = session.receive('[3,"not-ours",{"status":"Accepted"}]')
    assert isinstance(outcome, Drop)
    assert outcome.message_id == "not-ours"


def test_callresult_without_any_outstanding_call_is_dropped() -> None:
    outcome = make().receive('[3,"m1",{}]')
    assert isinstance(outcome, Drop)


def test_late_callresult_after_end_call_is_dropped() -> None:
    session = make()
    message_id = started(session)
    session.end_call(message_id)
    outcome = session.receive(json.dumps([3, message_id, {"status": "Accepted"}]))
    assert isinstance(outcome, Drop)
    assert outcome.message_id == message_id


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_callerror_for_the_outstanding_call_resolves_it_with_the_error(subprotocol: str) -> None:
    session = make(subprotocol)
    message_id = started(session, subprotocol)
    outcome = session.receive(json.dumps([4, message_id, "NotSupported", "no reset here", {}]))
    assert outcome == Resolve(
        message_id, "Reset", CallError(message_id, "NotSupported", "no reset here", {})
    )


def test_unknown_callerror_is_dropped() -> None:
    session = make()
    started(session)
    outcome = session.receive('[4,"other","GenericError","",{}]')
    assert isinstance(outcome, Drop)


def test_callresulterror_for_our_callresult_is_dropped_in_2_1() -> None:
    session = make("ocpp2.1")
    dispatched = session.receive(call("m1", "Heartbeat", {}))
    assert isinstance(dispatched, Dispatch)
    session.answer(dispatched.call, {"currentTime": TS})
    outcome = session.receive('[5,"m1","FormatViolation","bad time",{}]')
    assert isinstance(outcome, Drop)
    assert "FormatViolation" in outcome.reason


# -- 2.1 SEND ------------------------------------------------------------------------------------


def test_known_send_is_notified() -> None:
    """OCPP-J 2.1 4.2.4: SEND is an unconfirmed message."""
    outcome = make("ocpp2.1").receive(json.dumps([6, "s1", "NotifyPeriodicEventStream", PERIODIC]))
    assert outcome == Notify(Send("s1", "NotifyPeriodicEventStream", PERIODIC), None)


def test_invalid_send_in_lenient_mode_is_notified_with_the_violation() -> None:
    payload = {**PERIODIC, "id": "one"}
    session = make("ocpp2.1", validation="lenient")
    outcome = session.receive(json.dumps([6, "s1", "NotifyPeriodicEventStream", payload]))
    assert isinstance(outcome, Notify)
    assert isinstance(outcome.violation, SchemaViolation)
    assert outcome.violation.kind is RpcErrorKind.TYPE


@pytest.mark.parametrize(
    "frame",
    [
        '[6,"s1","Teleport",{}]',
        '[6,"s1","BootNotification",{}]',
        '[6,"s1","NotifyPeriodicEventStream",{}]',
        '[6,"s1","NotifyPeriodicEventStream",[]]',
        '[6,"s1",5,{}]',
        '[6,"s1","NotifyPeriodicEventStream"]',
        '[6,"","NotifyPeriodicEventStream",{}]',
    ],
)
def test_send_is_never_answered(frame: str) -> None:
    """OCPP-J 2.1 4.2.4: the receiver SHALL NOT respond to a SEND with a CALLRESULT or
    CALLERROR - unknown, invalid or broken SENDs are dropped."""
    session = make("ocpp2.1")
    outcome = session.receive(frame)
    assert isinstance(outcome, Drop)
    assert session.bad_messages == 1


def test_send_is_never_gated_into_an_answer() -> None:
    session = make("ocpp2.1", "Rejected")
    outcome = session.receive(json.dumps([6, "s1", "NotifyPeriodicEventStream", PERIODIC]))
    assert not isinstance(outcome, Reply)


# -- bad message accounting ----------------------------------------------------------------------


def test_bad_messages_are_counted_and_exhaust_the_session_past_the_limit() -> None:
    """`exhausted`: more bad messages than `max_bad_messages`."""
    session = make(max_bad_messages=3)
    for count in range(1, 4):
        session.receive("garbage")
        assert session.bad_messages == count
        assert not session.exhausted
    session.receive(call("m1", "Teleport", {}))
    assert session.bad_messages == 4
    assert session.exhausted


def test_zero_max_bad_messages_never_exhausts() -> None:
    session = make(max_bad_messages=0)
    for _ in range(50):
        session.receive("garbage")
    assert session.bad_messages == 50
    assert not session.exhausted


def test_valid_messages_are_not_counted_as_bad() -> None:
    session = make(max_bad_messages=1)
    for index in range(5):
        assert isinstance(session.receive(call(f"m{index}", "Heartbeat", {})), Dispatch)
    message_id = started(session)
    session.receive(json.dumps([3, message_id, {"status": "Accepted"}]))
    assert session.bad_messages == 0
    assert not session.exhausted
