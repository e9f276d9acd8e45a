"""The broker's formats as pure functions: envelopes, answers, commands, results (no Redis)."""

from __future__ import annotations

import orjson
import pytest

from examples.backend_consumer import ANSWERS
from gateway.broker.command_format import Command, outcome, parse_command, result_entry
from gateway.broker.envelope import (
    Answer,
    AnswerError,
    Invalid,
    Malformed,
    Refusal,
    event_envelope,
    iso_utc,
    judge_answer,
    message_envelope,
    message_key,
    parse_answer,
)
from gateway.broker.keys import BrokerKeys
from gateway.broker.streams import Appended, FirstDelivery, read_seen
from gateway.ocppj.codec import CallError, CallResult
from gateway.ocppj.errors import RpcErrorKind
from gateway.router import CallFailed
from gateway.versions import VERSIONS

V16, V201 = VERSIONS["ocpp1.6"], VERSIONS["ocpp2.0.1"]


def test_a_call_envelope_carries_every_documented_field():
    body = orjson.loads(
        message_envelope(
            "call",
            "CP-1",
            "ocpp2.0.1",
            "Heartbeat",
            "m-7",
            {},
            1764000000.1234,
            "node-a",
            "p:broker:replies:node-a",
            1764000005.1234,
        )
    )
    assert body == {
        "v": 1,
        "kind": "call",
        "id": "CP-1:m-7",
        "identity": "CP-1",
        "version": "ocpp2.0.1",
        "action": "Heartbeat",
        "message_id": "m-7",
        "payload": {},
        "received_at": "2025-11-24T16:00:00.123Z",
        "node": "node-a",
        "reply_to": "p:broker:replies:node-a",
        "deadline": 1764000005.123,
    }


def test_a_send_envelope_has_no_reply_to_nor_deadline():
    body = orjson.loads(
        message_envelope(
            "send", "CP-1", "ocpp2.1", "NotifyPeriodicEventStream", "s1", {}, 0.0, "n", None, None
        )
    )
    assert (body["kind"], body["reply_to"], body["deadline"]) == ("send", None, None)


def test_event_ids_never_look_like_message_keys():
    body = orjson.loads(
        event_envelope("abc123", "disconnected", "CP-1", "ocpp1.6", 0.5, "n", "n@0.5", 1006)
    )
    assert ":" not in body["id"] and ":" in message_key("CP-1", "abc123")
    assert body["close_code"] == 1006 and body["at"] == "1970-01-01T00:00:00.500Z"
    assert body["session"] == "n@0.5"


def test_iso_utc_has_milliseconds_and_a_z():
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1.9996) == "1970-01-01T00:00:01.999Z"


def test_keys_live_under_the_prefix_and_the_append_script_keys_share_a_slot():
    keys = BrokerKeys.under("gw:")
    assert keys.calls == "gw:broker:{calls}"
    assert keys.seen("CP-1:m1") == "gw:broker:{calls}:seen:CP-1:m1"  # same hash tag
    assert keys.replies("node-a") == "gw:broker:replies:node-a"
    assert (keys.commands, keys.results) == ("gw:broker:commands", "gw:broker:results")
    assert keys.command("c1") == "gw:broker:command:c1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"id":"CP:1","payload":{"status":"Accepted"}}', Answer("CP:1", {"status": "Accepted"})),
        (
            b'{"id":"CP:1","error":{"code":"SecurityError"}}',
            Answer("CP:1", error=AnswerError("SecurityError", "", {})),
        ),
        (b"nope", Malformed("the answer is not JSON")),
        (b"[1]", Malformed("the answer is not a JSON object")),
        (b'{"payload":{}}', Malformed("the answer has no string 'id'")),
        (
            b'{"id":"CP:1"}',
            Malformed("the answer needs exactly one of 'payload' and 'error'", "CP:1"),
        ),
        (
            b'{"id":"CP:1","payload":{},"error":{"code":"X"}}',
            Malformed("the answer needs exactly one of 'payload' and 'error'", "CP:1"),
        ),
        (b'{"id":"CP:1","payload":[]}', Malformed("'payload' must be a JSON object", "CP:1")),
        (
            b'{"id":"CP:1","error":"bad"}',
            Malformed("'error' must be an object with a string 'code'", "CP:1"),
        ),
    ],
)
def test_answers_are_parsed_or_refused_with_the_reason(raw, expected):
    assert parse_answer(raw) == expected


def test_a_valid_payload_is_what_the_charge_point_gets():
    payload = {"currentTime": "2026-01-01T00:00:00Z"}
    assert judge_answer(Answer("x", payload), V201, "Heartbeat") == payload


def test_a_payload_failing_the_versions_schema_is_invalid():
    verdict = judge_answer(Answer("x", {"status": "Maybe"}), V16, "BootNotification")
    assert isinstance(verdict, Invalid)
    assert verdict.reason.startswith("the BootNotification response does not match the ocpp1.6")


@pytest.mark.parametrize(
    ("version", "code", "kind"),
    [
        (V16, "OccurenceConstraintViolation", RpcErrorKind.OCCURRENCE),  # 1.6's spelling
        (V16, "FormationViolation", RpcErrorKind.FORMAT),
        (V201, "OccurrenceConstraintViolation", RpcErrorKind.OCCURRENCE),
        (V201, "SecurityError", RpcErrorKind.SECURITY),
    ],
)
def test_error_answers_use_the_versions_error_code_names(version, code, kind):
    verdict = judge_answer(Answer("x", error=AnswerError(code, "why", {})), version, "Heartbeat")
    assert verdict == Refusal(kind, code, "why", {})


def test_an_error_code_of_another_version_is_invalid():
    verdict = judge_answer(
        Answer("x", error=AnswerError("RpcFrameworkError", "", {})), V16, "Heartbeat"
    )
    assert verdict == Invalid("'RpcFrameworkError' is not an OCPP-J error code of ocpp1.6")


# -- commands ------------------------------------------------------------------------------------


def test_a_command_is_parsed_with_its_optional_timeout():
    raw = orjson.dumps(
        {"command_id": "c1", "identity": "CP", "action": "Reset", "payload": {"type": "Hard"}}
        | {"timeout": 5}
    )
    assert parse_command(raw) == Command("c1", "CP", "Reset", {"type": "Hard"}, 5)
    assert parse_command(b'{"command_id":"c2","identity":"CP","action":"ClearCache"}') == Command(
        "c2", "CP", "ClearCache", {}
    )


@pytest.mark.parametrize(
    ("raw", "reason", "command_id"),
    [
        (b"{", "the command is not JSON", None),
        (b'{"identity":"CP"}', "'command_id' must be a string of 1-200 characters", None),
        (b'{"command_id":"c","action":"Reset"}', "'identity' and 'action' must be", "c"),
        (b'{"command_id":"c","identity":"CP","action":"R","payload":1}', "'payload' must", "c"),
        (b'{"command_id":"c","identity":"CP","action":"R","timeout":0}', "'timeout' must", None),
    ],
)
def test_a_malformed_command_says_why(raw, reason, command_id):
    parsed = parse_command(raw)
    assert isinstance(parsed, Malformed) and parsed.reason.startswith(reason)
    if command_id is not None:
        assert parsed.id == command_id


def test_results_carry_the_answer_or_the_failure():
    assert outcome(CallResult("m", {"status": "Accepted"})) == (
        "result",
        {"status": "Accepted"},
        None,
    )
    assert outcome(CallError("m", "NotSupported", "no", {"a": 1})) == (
        "error",
        None,
        {"code": "NotSupported", "description": "no", "details": {"a": 1}},
    )
    assert outcome(CallFailed("offline", "not connected")) == (
        "offline",
        None,
        {"description": "not connected"},
    )
    body = orjson.loads(
        result_entry("c1", "CP", "Reset", "timeout", "n", 0.0, None, {"description": "x"})
    )
    assert body == {
        "v": 1,
        "command_id": "c1",
        "identity": "CP",
        "action": "Reset",
        "status": "timeout",
        "node": "n",
        "completed_at": "1970-01-01T00:00:00.000Z",
        "error": {"description": "x"},
    }


# -- the example backend's answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("subprotocol", "action"),
    [(subprotocol, action) for subprotocol, table in ANSWERS.items() for action in table],
)
def test_the_example_backends_answers_are_valid_for_their_version(subprotocol, action):
    version = VERSIONS[subprotocol]
    assert action in version.charge_point_actions
    request = {"idTag": "T1"} if action == "StopTransaction" else {"idToken": {}}
    payload = ANSWERS[subprotocol][action](request)
    assert version.schemas.validate_response(action, payload) is None


@pytest.mark.parametrize(
    ("value", "seen"),
    [
        (b'{"id": "CP-1:m1", "payload": {}}', Appended(False, b'{"id": "CP-1:m1", "payload": {}}')),
        (
            b"pending 1769860805123-0 ocppgw:broker:replies:gw-a",
            Appended(False, None, FirstDelivery("1769860805123-0", "ocppgw:broker:replies:gw-a")),
        ),
        (b"pending 1769860805123-0 ", Appended(False, None)),  # a SEND: no reply stream
        (b"", Appended(False, None)),  # written by gateways before the first delivery was kept
    ],
)
def test_a_duplicates_seen_key_gives_its_answer_or_where_the_answer_goes(value, seen):
    assert read_seen(value) == seen


def test_the_answer_to_a_first_delivery_is_looked_for_from_shortly_before_its_entry():
    first = FirstDelivery("1769860805123-4", "r")
    assert first.scan_from == "1769860800123-0"  # 5 s: clocks of Redis Cluster shards
    assert FirstDelivery("?", "r").scan_from == "0-0"
