"""The Python SDK and command line (client/): filled in by its issue."""
