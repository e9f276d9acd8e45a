"""OCPP-J framing: parsing every message type, every malformed frame, and compact formatting.

References: OCPP-J 1.6 section 4; OCPP 2.0.1 part 4 and OCPP 2.1 part 4, section 4 (RPC framework).
"""

from __future__ import annotations

import json

import pytest

from gateway.ocppj.codec import (
    MAX_ERROR_DESCRIPTION_LENGTH,
    MAX_MESSAGE_ID_LENGTH,
    UNREADABLE_MESSAGE_ID,
    Call,
    CallError,
    CallResult,
    FrameError,
    MessageType,
    Send,
    format_call,
    format_call_error,
    format_call_result,
    format_send,
    parse_frame,
)
from gateway.ocppj.errors import OCPP2_ERROR_CODES, OCPP16_ERROR_CODES, RpcErrorKind
from gateway.versions import VERSIONS

V16 = VERSIONS["ocpp1.6"]
V201 = VERSIONS["ocpp2.0.1"]
V21 = VERSIONS["ocpp2.1"]
ALL_TYPES = V21.message_types
SUBPROTOCOLS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")

# OCPP-J 1.6 4.2.3 table 7 (with its spelling) and OCPP-J 2.x 4.3 "Valid Error Codes".
OCPP16_SPEC_CODES = {
    "NotImplemented",
    "NotSupported",
    "InternalError",
    "ProtocolError",
    "SecurityError",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "TypeConstraintViolation",
    "GenericError",
}
OCPP2_SPEC_CODES = {
    "FormatViolation",
    "GenericError",
    "InternalError",
    "MessageTypeNotSupported",
    "NotImplemented",
    "NotSupported",
    "OccurrenceConstraintViolation",
    "PropertyConstraintViolation",
    "ProtocolError",
    "RpcFrameworkError",
    "SecurityError",
    "TypeConstraintViolation",
}

ID_36 = "0123456789abcdef0123456789abcdef0123"
ID_37 = ID_36 + "4"


def frame_error(frame: str | bytes, message_types: frozenset[int] = ALL_TYPES) -> FrameError:
    result = parse_frame(frame, message_types)
    assert isinstance(result, FrameError), result
    return result


# -- valid messages ------------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_call_is_parsed_into_id_action_and_payload(subprotocol: str) -> None:
    frame = '[2,"19223201","BootNotification",{"reason":"PowerUp","n":[1,2]}]'
    result = parse_frame(frame, VERSIONS[subprotocol].message_types)
    assert result == Call("19223201", "BootNotification", {"reason": "PowerUp", "n": [1, 2]})


def test_call_with_whitespace_and_newlines_is_parsed() -> None:
    frame = '[2,\n  "19223201",\n  "Heartbeat",\n  {}\n]\n'
    assert parse_frame(frame, V201.message_types) == Call("19223201", "Heartbeat", {})


def test_call_with_non_ascii_payload_text_is_parsed() -> None:
    frame = '[2,"1","DataTransfer",{"vendorId":"V","data":"Grüße €"}]'
    result = parse_frame(frame, V16.message_types)
    assert result == Call("1", "DataTransfer", {"vendorId": "V", "data": "Grüße €"})


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_callresult_is_parsed(subprotocol: str) -> None:
    frame = '[3,"19223201",{"currentTime":"2013-02-01T20:53:32.486Z","interval":300}]'
    result = parse_frame(frame, VERSIONS[subprotocol].message_types)
    assert result == CallResult(
        "19223201", {"currentTime": "2013-02-01T20:53:32.486Z", "interval": 300}
    )


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
def test_callerror_is_parsed_and_is_not_a_result_error(subprotocol: str) -> None:
    frame = '[4,"162376037","NotSupported","SetDisplayMessageRequest not implemented",{"a":1}]'
    result = parse_frame(frame, VERSIONS[subprotocol].message_types)
    assert result == CallError(
        "162376037", "NotSupported", "SetDisplayMessageRequest not implemented", {"a": 1}
    )
    assert result.result_error is False


def test_callresulterror_is_parsed_as_a_result_error_in_2_1() -> None:
    """OCPP-J 2.1 4.2.3: CALLRESULTERROR (5) answers a CALLRESULT that contains errors."""
    result = parse_frame('[5,"42","FormatViolation","bad response",{}]', V21.message_types)
    assert result == CallError("42", "FormatViolation", "bad response", {}, result_error=True)


def test_send_is_parsed_in_2_1() -> None:
    """OCPP-J 2.1 4.2.4: a SEND has the same 4 elements as a CALL."""
    frame = '[6,"19223201","NotifyPeriodicEventStream",{"id":123,"pending":0}]'
    result = parse_frame(frame, V21.message_types)
    assert result == Send("19223201", "NotifyPeriodicEventStream", {"id": 123, "pending": 0})


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('[2,"1","Heartbeat",null]', Call("1", "Heartbeat", {})),
        ('[3,"1",null]', CallResult("1", {})),
        ('[6,"1","NotifyPeriodicEventStream",null]', Send("1", "NotifyPeriodicEventStream", {})),
    ],
)
def test_null_payload_is_read_as_empty_object(frame: str, expected: object) -> None:
    """OCPP-J 2.x 4.1.5: with no payload JSON allows both null and {}."""
    assert parse_frame(frame, ALL_TYPES) == expected


@pytest.mark.parametrize("frame_type", [MessageType.CALL, MessageType.SEND])
def test_message_id_of_exactly_36_characters_is_accepted(frame_type: int) -> None:
    """OCPP-J 2.x 4.1.4: messageId is string[36], to allow for UUIDs."""
    result = parse_frame(f'[{frame_type},"{ID_36}","Heartbeat",{{}}]', ALL_TYPES)
    assert not isinstance(result, FrameError)
    assert result.message_id == ID_36
    assert len(ID_36) == MAX_MESSAGE_ID_LENGTH == 36


def test_message_id_of_exactly_36_characters_is_accepted_in_a_callresult() -> None:
    assert parse_frame(f'[3,"{ID_36}",{{}}]', ALL_TYPES) == CallResult(ID_36, {})


# -- unreadable frames: RpcFrameworkError with MessageId "-1" ------------------------------------

UNREADABLE_CALLS = [
    pytest.param("[2,", id="invalid-json"),
    pytest.param("", id="empty-text"),
    pytest.param('[2,"1","Heartbeat",{},]', id="trailing-comma"),
    pytest.param('[2,"1","Heartbeat",{"a":NaN}]', id="nan-is-not-json"),
    pytest.param('{"messageTypeId":2}', id="object-not-array"),
    pytest.param('"[2,\\"1\\",\\"Heartbeat\\",{}]"', id="string-not-array"),
    pytest.param("2", id="number-not-array"),
    pytest.param("null", id="null-not-array"),
    pytest.param("[]", id="empty-array"),
    pytest.param("[2]", id="message-id-missing"),
    pytest.param('[2,1,"Heartbeat",{}]', id="message-id-a-number"),
    pytest.param('[2,null,"Heartbeat",{}]', id="message-id-null"),
    pytest.param('[2,["1"],"Heartbeat",{}]', id="message-id-an-array"),
    pytest.param('[2,"","Heartbeat",{}]', id="message-id-empty"),
    pytest.param(f'[2,"{ID_37}","Heartbeat",{{}}]', id="message-id-37-characters"),
    pytest.param("[null]", id="type-null-and-no-id"),
]


@pytest.mark.parametrize("frame", UNREADABLE_CALLS)
def test_call_with_unreadable_message_id_is_answered_with_minus_one(frame: str) -> None:
    """OCPP-J 2.0.1/2.1 part 4, 4.2.3: when the MessageId cannot be read, the CALLERROR SHALL
    contain "-1" as MessageId; the error is RpcFrameworkError ("MessageId could not be read")."""
    error = frame_error(frame, V201.message_types)
    assert error.message_id == UNREADABLE_MESSAGE_ID == "-1"
    assert error.kind is RpcErrorKind.RPC_FRAMEWORK
    assert error.answerable
    assert error.description


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b'[2,"1","Heartbeat",\xff{}]', id="invalid-utf8-inside-json"),
        pytest.param(b"\xff\xfe", id="invalid-utf8-only"),
        pytest.param(b'[2,"\xc3\x28","Heartbeat",{}]', id="invalid-utf8-in-message-id"),
    ],
)
def test_invalid_utf8_bytes_are_an_rpc_framework_error_with_minus_one(frame: bytes) -> None:
    """OCPP-J 2.x 4.1.2: the whole message MUST be valid JSON encoded in UTF-8."""
    error = frame_error(frame)
    assert (error.kind, error.message_id, error.message_type) == (
        RpcErrorKind.RPC_FRAMEWORK,
        "-1",
        None,
    )
    assert error.answerable


def test_escaped_lone_surrogate_is_not_valid_utf8_json() -> None:
    error = frame_error('[2,"\\ud800","Heartbeat",{}]')
    assert (error.kind, error.message_id) == (RpcErrorKind.RPC_FRAMEWORK, "-1")


@pytest.mark.parametrize(
    ("frame", "message_id"),
    [
        pytest.param('[true,"abc","Heartbeat",{}]', "abc", id="bool-true"),
        pytest.param('[false,"abc","Heartbeat",{}]', "abc", id="bool-false"),
        pytest.param('[2.0,"abc","Heartbeat",{}]', "abc", id="float"),
        pytest.param('["2","abc","Heartbeat",{}]', "abc", id="string"),
        pytest.param('[null,"abc","Heartbeat",{}]', "abc", id="null"),
        pytest.param('[[2],"abc","Heartbeat",{}]', "abc", id="array"),
        pytest.param('[true,"",{}]', "-1", id="bool-and-empty-id"),
        pytest.param(f'["2","{ID_37}"]', "-1", id="string-and-long-id"),
    ],
)
def test_first_element_not_an_integer_is_an_rpc_framework_error(
    frame: str, message_id: str
) -> None:
    """The MessageTypeId is an integer (a JSON bool is not one); the id is kept when readable."""
    error = frame_error(frame)
    assert error.kind is RpcErrorKind.RPC_FRAMEWORK
    assert error.message_id == message_id
    assert error.message_type is None
    assert error.answerable  # it may be a CALL: answering is allowed


def test_bool_message_type_is_not_taken_for_a_call() -> None:
    """`true == 1` in Python: a bool must not pass as an int type number (nor `false` as 0)."""
    assert isinstance(parse_frame('[true,"abc",{}]', frozenset({1, 2, 3, 4})), FrameError)


@pytest.mark.parametrize("frame_type", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("bad_id", ['""', "7", "null", f'"{ID_37}"'])
def test_unreadable_message_id_keeps_the_message_type(frame_type: int, bad_id: str) -> None:
    error = frame_error(f'[{frame_type},{bad_id},"X","y",{{}}]')
    assert (error.kind, error.message_id, error.message_type) == (
        RpcErrorKind.RPC_FRAMEWORK,
        "-1",
        frame_type,
    )


# -- unknown message types per version -----------------------------------------------------------


@pytest.mark.parametrize(
    ("subprotocol", "frame_type"),
    [
        ("ocpp1.6", 5),
        ("ocpp1.6", 6),
        ("ocpp2.0.1", 5),
        ("ocpp2.0.1", 6),
        *[(s, t) for s in SUBPROTOCOLS for t in (-1, 0, 1, 7, 8, 99)],
    ],
)
def test_message_type_unknown_to_the_version_is_message_type_not_supported(
    subprotocol: str, frame_type: int
) -> None:
    frame = f'[{frame_type},"abc","NotifyPeriodicEventStream",{{}}]'
    error = frame_error(frame, VERSIONS[subprotocol].message_types)
    assert error.kind is RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED
    assert (error.message_id, error.message_type) == ("abc", frame_type)
    assert str(frame_type) in error.description


@pytest.mark.parametrize(
    ("subprotocol", "expected"),
    [
        ("ocpp1.6", {2, 3, 4}),
        ("ocpp2.0.1", {2, 3, 4}),
        ("ocpp2.1", {2, 3, 4, 5, 6}),
    ],
)
def test_versions_declare_their_message_types(subprotocol: str, expected: set[int]) -> None:
    """OCPP-J 2.1 4.1.3 adds CALLRESULTERROR (5) and SEND (6) to CALL, CALLRESULT, CALLERROR."""
    assert set(VERSIONS[subprotocol].message_types) == expected


@pytest.mark.parametrize("frame_type", [5, 6, 7])
def test_unknown_message_type_in_2_0_1_may_be_answered(frame_type: int) -> None:
    """OCPP 2.0.1 part 4, 4.4: an implementation that receives a message with an unknown message
    type SHALL respond with a CALLERROR with errorCode MessageTypeNotSupported."""
    error = frame_error(f'[{frame_type},"abc","X",{{}}]', V201.message_types)
    assert error.kind is RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED
    assert error.answerable


# -- wrong structure of known message types -------------------------------------------------------

STRUCTURE_ERRORS = [
    # (frame, kind, message type)
    ('[2,"m"]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m","Heartbeat"]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m","Heartbeat",{},{}]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m",5,{}]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m",null,{}]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m",["Heartbeat"],{}]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m","",{}]', RpcErrorKind.RPC_FRAMEWORK, 2),
    ('[2,"m","Heartbeat",[]]', RpcErrorKind.FORMAT, 2),
    ('[2,"m","Heartbeat","{}"]', RpcErrorKind.FORMAT, 2),
    ('[2,"m","Heartbeat",1]', RpcErrorKind.FORMAT, 2),
    ('[2,"m","Heartbeat",true]', RpcErrorKind.FORMAT, 2),
    ('[3,"m"]', RpcErrorKind.RPC_FRAMEWORK, 3),
    ('[3,"m",{},{}]', RpcErrorKind.RPC_FRAMEWORK, 3),
    ('[3,"m",[]]', RpcErrorKind.FORMAT, 3),
    ('[3,"m","ok"]', RpcErrorKind.FORMAT, 3),
    ('[4,"m","GenericError","d"]', RpcErrorKind.RPC_FRAMEWORK, 4),
    ('[4,"m","GenericError","d",{},{}]', RpcErrorKind.RPC_FRAMEWORK, 4),
    ('[4,"m",1,"d",{}]', RpcErrorKind.RPC_FRAMEWORK, 4),
    ('[4,"m","GenericError",null,{}]', RpcErrorKind.RPC_FRAMEWORK, 4),
    ('[4,"m","GenericError","d",null]', RpcErrorKind.RPC_FRAMEWORK, 4),
    ('[4,"m","GenericError","d",[]]', RpcErrorKind.RPC_FRAMEWORK, 4),
    ('[5,"m","GenericError","d"]', RpcErrorKind.RPC_FRAMEWORK, 5),
    ('[5,"m","GenericError",{},{}]', RpcErrorKind.RPC_FRAMEWORK, 5),
    ('[6,"m","NotifyPeriodicEventStream"]', RpcErrorKind.RPC_FRAMEWORK, 6),
    ('[6,"m",7,{}]', RpcErrorKind.RPC_FRAMEWORK, 6),
    ('[6,"m","NotifyPeriodicEventStream",[]]', RpcErrorKind.FORMAT, 6),
]


@pytest.mark.parametrize(("frame", "kind", "frame_type"), STRUCTURE_ERRORS)
def test_wrong_structure_is_refused_with_the_readable_message_id(
    frame: str, kind: RpcErrorKind, frame_type: int
) -> None:
    error = frame_error(frame, V21.message_types)
    assert (error.kind, error.message_id, error.message_type) == (kind, "m", frame_type)
    assert error.description


@pytest.mark.parametrize(("frame", "kind", "frame_type"), STRUCTURE_ERRORS)
def test_only_a_broken_call_may_be_answered(
    frame: str, kind: RpcErrorKind, frame_type: int
) -> None:
    """OCPP-J 2.x 4.2.3: a CALLERROR answers a CALL; a broken CALLRESULT, CALLERROR or
    CALLRESULTERROR is never answered with a CALLERROR, and a SEND is never answered (4.2.4)."""
    error = frame_error(frame, V21.message_types)
    assert error.answerable is (frame_type == MessageType.CALL)


# -- binary frames --------------------------------------------------------------------------------


def test_binary_frame_holding_a_call_is_refused_with_its_message_id() -> None:
    """OCPP-J carries UTF-8 JSON in text frames: a binary frame is not an OCPP-J message."""
    error = frame_error(b'[2,"abc","Heartbeat",{}]', V201.message_types)
    assert (error.kind, error.message_id, error.message_type) == (
        RpcErrorKind.RPC_FRAMEWORK,
        "abc",
        2,
    )
    assert "binary" in error.description
    assert error.answerable


@pytest.mark.parametrize(
    "frame", [b'[3,"abc",{}]', b'[4,"abc","GenericError","",{}]', b'[6,"abc","X",{}]']
)
def test_binary_frame_holding_a_result_error_or_send_is_not_answered(frame: bytes) -> None:
    error = frame_error(frame, V21.message_types)
    assert error.kind is RpcErrorKind.RPC_FRAMEWORK
    assert error.message_id == "abc"
    assert not error.answerable


@pytest.mark.parametrize(
    "frame",
    [b"{}", b"[]", b'[2,"","Heartbeat",{}]', f'[2,"{ID_37}","Heartbeat",{{}}]'.encode()],
)
def test_binary_frame_without_readable_message_id_is_answered_with_minus_one(
    frame: bytes,
) -> None:
    error = frame_error(frame, V201.message_types)
    assert (error.kind, error.message_id) == (RpcErrorKind.RPC_FRAMEWORK, "-1")
    assert error.answerable


def test_binary_frame_with_bool_message_type_keeps_no_message_type() -> None:
    error = frame_error(b'[true,"abc","Heartbeat",{}]', V201.message_types)
    assert (error.message_id, error.message_type) == ("abc", None)


# -- FrameError.answerable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_type", "answerable"),
    [(None, True), (2, True), (3, False), (4, False), (5, False), (6, False)],
)
def test_frame_error_is_answerable_only_when_it_may_be_a_call(
    message_type: int | None, answerable: bool
) -> None:
    """Never answer a CALLRESULT, CALLERROR, CALLRESULTERROR (OCPP-J 2.x 4.2.3) or SEND (4.2.4)."""
    error = FrameError(RpcErrorKind.RPC_FRAMEWORK, "x", "m", message_type)
    assert error.answerable is answerable


def test_frame_error_defaults_to_the_unreadable_message_id() -> None:
    assert FrameError(RpcErrorKind.RPC_FRAMEWORK, "x").message_id == "-1"


# -- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (format_call("19223201", "Heartbeat", {}), '[2,"19223201","Heartbeat",{}]'),
        (
            format_call("1", "BootNotification", {"reason": "PowerUp", "a": [1, {"b": None}]}),
            '[2,"1","BootNotification",{"reason":"PowerUp","a":[1,{"b":null}]}]',
        ),
        (
            format_send("7", "NotifyPeriodicEventStream", {"id": 123, "pending": 0}),
            '[6,"7","NotifyPeriodicEventStream",{"id":123,"pending":0}]',
        ),
        (
            format_call_result("19223201", {"interval": 300, "status": "Accepted"}),
            '[3,"19223201",{"interval":300,"status":"Accepted"}]',
        ),
        (format_call_result("1", {}), '[3,"1",{}]'),
        (
            format_call_error("162376037", "NotSupported", "SetDisplayMessageRequest not here"),
            '[4,"162376037","NotSupported","SetDisplayMessageRequest not here",{}]',
        ),
        (format_call_error("-1", "RpcFrameworkError"), '[4,"-1","RpcFrameworkError","",{}]'),
        (
            format_call_error("1", "GenericError", "d", {"k": [1, 2]}),
            '[4,"1","GenericError","d",{"k":[1,2]}]',
        ),
        (
            format_call_error("1", "FormatViolation", "bad", result_error=True),
            '[5,"1","FormatViolation","bad",{}]',
        ),
        (
            format_call_error("1", "GenericError", 'quote " and \\', {}),
            '[4,"1","GenericError","quote \\" and \\\\",{}]',
        ),
    ],
)
def test_formatters_write_compact_frames(frame: str, expected: str) -> None:
    assert frame == expected


def test_formatted_frames_parse_back_to_the_same_messages() -> None:
    payload = {"text": "Grüße €", "n": 1.5, "list": [True, False, None]}
    cases = [
        (format_call("a", "DataTransfer", payload), Call("a", "DataTransfer", payload)),
        (format_send("b", "X", payload), Send("b", "X", payload)),
        (format_call_result("c", payload), CallResult("c", payload)),
        (
            format_call_error("d", "GenericError", "e", payload),
            CallError("d", "GenericError", "e", payload),
        ),
        (
            format_call_error("f", "GenericError", "g", result_error=True),
            CallError("f", "GenericError", "g", {}, result_error=True),
        ),
    ]
    for frame, message in cases:
        assert parse_frame(frame, ALL_TYPES) == message
        assert ", " not in frame and ": " not in frame


def test_callerror_description_is_truncated_to_255_characters() -> None:
    """OCPP-J 2.x 4.2.3: ErrorDescription is string[255]."""
    description = "x" * 254 + "é" + "overflow"
    decoded = json.loads(format_call_error("1", "GenericError", description))
    assert decoded[3] == description[:255]
    assert len(decoded[3]) == MAX_ERROR_DESCRIPTION_LENGTH == 255


def test_callerror_description_of_exactly_255_characters_is_kept() -> None:
    description = "y" * 255
    assert json.loads(format_call_error("1", "GenericError", description))[3] == description


def test_callerror_details_default_to_an_empty_object() -> None:
    """OCPP-J 2.x 4.2.3: with no error details you MUST fill in an empty object {}."""
    assert json.loads(format_call_error("1", "GenericError", "d", None))[4] == {}


def test_format_call_error_does_not_mutate_the_details() -> None:
    details = {"a": 1}
    format_call_error("1", "GenericError", "d", details)
    assert details == {"a": 1}


# -- error code names per version ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("subprotocol", "kind", "name"),
    [
        ("ocpp1.6", RpcErrorKind.FORMAT, "FormationViolation"),
        ("ocpp1.6", RpcErrorKind.OCCURRENCE, "OccurenceConstraintViolation"),
        ("ocpp1.6", RpcErrorKind.PROPERTY, "PropertyConstraintViolation"),
        ("ocpp1.6", RpcErrorKind.TYPE, "TypeConstraintViolation"),
        ("ocpp1.6", RpcErrorKind.NOT_IMPLEMENTED, "NotImplemented"),
        ("ocpp1.6", RpcErrorKind.NOT_SUPPORTED, "NotSupported"),
        ("ocpp1.6", RpcErrorKind.SECURITY, "SecurityError"),
        ("ocpp1.6", RpcErrorKind.INTERNAL, "InternalError"),
        ("ocpp1.6", RpcErrorKind.PROTOCOL, "ProtocolError"),
        ("ocpp1.6", RpcErrorKind.GENERIC, "GenericError"),
        *[
            (s, kind, name)
            for s in ("ocpp2.0.1", "ocpp2.1")
            for kind, name in [
                (RpcErrorKind.FORMAT, "FormatViolation"),
                (RpcErrorKind.OCCURRENCE, "OccurrenceConstraintViolation"),
                (RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, "MessageTypeNotSupported"),
                (RpcErrorKind.RPC_FRAMEWORK, "RpcFrameworkError"),
                (RpcErrorKind.PROPERTY, "PropertyConstraintViolation"),
                (RpcErrorKind.TYPE, "TypeConstraintViolation"),
                (RpcErrorKind.NOT_IMPLEMENTED, "NotImplemented"),
                (RpcErrorKind.NOT_SUPPORTED, "NotSupported"),
                (RpcErrorKind.SECURITY, "SecurityError"),
                (RpcErrorKind.INTERNAL, "InternalError"),
                (RpcErrorKind.PROTOCOL, "ProtocolError"),
                (RpcErrorKind.GENERIC, "GenericError"),
            ]
        ],
    ],
)
def test_error_kinds_are_named_per_version(subprotocol: str, kind: RpcErrorKind, name: str) -> None:
    """OCPP-J 1.6 4.2.3 keeps its misspellings (errata 5.1, 5.2: "do not fix"); 2.x 4.3 fixes
    them and adds MessageTypeNotSupported and RpcFrameworkError."""
    assert VERSIONS[subprotocol].error_code(kind) == name


@pytest.mark.parametrize(
    ("table", "allowed"),
    [(OCPP16_ERROR_CODES, OCPP16_SPEC_CODES), (OCPP2_ERROR_CODES, OCPP2_SPEC_CODES)],
    ids=["1.6", "2.x"],
)
def test_every_error_kind_has_a_name_from_the_spec_table(
    table: dict[RpcErrorKind, str], allowed: set[str]
) -> None:
    assert set(table) == set(RpcErrorKind)
    assert set(table.values()) <= allowed


def test_2_x_error_names_cover_the_whole_spec_table() -> None:
    assert set(OCPP2_ERROR_CODES.values()) == OCPP2_SPEC_CODES


def test_1_6_never_uses_2_x_only_error_names() -> None:
    """1.6 has no RpcFrameworkError nor MessageTypeNotSupported (OCPP-J 1.6 table 7)."""
    names = {V16.error_code(kind) for kind in RpcErrorKind}
    assert not names & {"RpcFrameworkError", "MessageTypeNotSupported", "FormatViolation"}
