"""Version-neutral RPC error kinds, named per OCPP version by the version modules."""

from __future__ import annotations

from enum import Enum


class RpcErrorKind(Enum):
    """Why a frame or payload was refused; each version names these its own way."""

    FORMAT = "format"  # 1.6 FormationViolation, 2.x FormatViolation
    RPC_FRAMEWORK = "rpc_framework"  # 2.x RpcFrameworkError (not a valid RPC message)
    PROTOCOL = "protocol"
    MESSAGE_TYPE_NOT_SUPPORTED = "message_type_not_supported"
    NOT_IMPLEMENTED = "not_implemented"  # unknown action
    NOT_SUPPORTED = "not_supported"  # known action, not accepted in this direction
    OCCURRENCE = "occurrence"  # required field missing, too few/many items
    PROPERTY = "property"  # a value out of its allowed set or range
    TYPE = "type"  # a value of the wrong JSON type
    SECURITY = "security"
    INTERNAL = "internal"
    GENERIC = "generic"


OCPP16_ERROR_CODES: dict[RpcErrorKind, str] = {
    RpcErrorKind.FORMAT: "FormationViolation",
    # 1.6 has no RpcFrameworkError nor MessageTypeNotSupported: a frame that is not a valid
    # RPC message does "not conform the PDU structure", which 1.6 calls FormationViolation.
    RpcErrorKind.RPC_FRAMEWORK: "FormationViolation",
    RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "FormationViolation",
    RpcErrorKind.PROTOCOL: "ProtocolError",
    RpcErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    RpcErrorKind.NOT_SUPPORTED: "NotSupported",
    RpcErrorKind.OCCURRENCE: "OccurenceConstraintViolation",  # sic: 1.6 spells it so
    RpcErrorKind.PROPERTY: "PropertyConstraintViolation",
    RpcErrorKind.TYPE: "TypeConstraintViolation",
    RpcErrorKind.SECURITY: "SecurityError",
    RpcErrorKind.INTERNAL: "InternalError",
    RpcErrorKind.GENERIC: "GenericError",
}

OCPP2_ERROR_CODES: dict[RpcErrorKind, str] = {
    RpcErrorKind.FORMAT: "FormatViolation",
    RpcErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
    RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "MessageTypeNotSupported",
    RpcErrorKind.PROTOCOL: "ProtocolError",
    RpcErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    RpcErrorKind.NOT_SUPPORTED: "NotSupported",
    RpcErrorKind.OCCURRENCE: "OccurrenceConstraintViolation",
    RpcErrorKind.PROPERTY: "PropertyConstraintViolation",
    RpcErrorKind.TYPE: "TypeConstraintViolation",
    RpcErrorKind.SECURITY: "SecurityError",
    RpcErrorKind.INTERNAL: "InternalError",
    RpcErrorKind.GENERIC: "GenericError",
}
