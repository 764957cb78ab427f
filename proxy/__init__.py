"""The gateway (proxy/): filled in by its issue."""
