"""The store's exception tree: storage, never HTTP. The app layer maps it to answers.

StoreError
├── StorageUnavailable   the database could not be reached or refused a statement;
│                        nothing was written (the unit of work rolled back): retry later
└── StoreTooNew          the store's schema is newer than this code knows
"""

from __future__ import annotations

__all__ = ["StorageUnavailable", "StoreError", "StoreTooNew"]


class StoreError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageUnavailable(StoreError):
    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "the gateway's store is unavailable, so no limit can be checked and nothing "
            "was admitted or charged; retry in a few seconds"
        )


class StoreTooNew(StoreError):
    pass
