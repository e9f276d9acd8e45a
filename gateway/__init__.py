"""ocpp-gateway: an OCPP WebSocket gateway (OCPP 1.6, 2.0.1 and 2.1 over OCPP-J)."""

__version__ = "0.1.0"
