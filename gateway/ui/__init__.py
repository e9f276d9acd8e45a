"""The operator UI: an authenticated WebSocket API (`/ui`) and the web console that uses it."""
