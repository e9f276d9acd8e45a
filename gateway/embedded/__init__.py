"""The embedded central system: answers charge-point-initiated actions when no backend is set."""
