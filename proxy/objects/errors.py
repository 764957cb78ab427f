"""The output store's exception tree:

ObjectStoreError           something about kept outputs went wrong; `message` says what
├── ObjectTooLarge         the content passed the byte limit it was written under
├── SourceFailed           the bytes being written stopped coming (the source's own error
│                          is the cause); nothing was stored
├── ObjectMissing          no object under that key (deleted, or never written)
└── ObjectStoreUnavailable the folder or bucket could not be read or written
"""

from __future__ import annotations

__all__ = [
    "ObjectMissing",
    "ObjectStoreError",
    "ObjectStoreUnavailable",
    "ObjectTooLarge",
    "SourceFailed",
]


class ObjectStoreError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ObjectTooLarge(ObjectStoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit:,} bytes (output_max_bytes)")
        self.limit = limit


class SourceFailed(ObjectStoreError):
    pass


class ObjectMissing(ObjectStoreError):
    pass


class ObjectStoreUnavailable(ObjectStoreError):
    pass
