"""OCPP-J: the RPC framing of OCPP over WebSocket, as pure functions (no sockets)."""
