"""The store's exception tree: storage, never HTTP. The app layer maps it to answers.

StoreError
├── StorageUnavailable   the database could not be reached or refused a statement;
│                        nothing was written (the unit of work rolled back): retry later.
│                        `outage`: not a moment's contention (a lock wait, a busy file)
│                        but the database unreachable or unwritable, for every caller
└── StoreTooNew          the store's schema is newer than this code knows
"""

from __future__ import annotations

__all__ = ["StorageUnavailable", "StoreError", "StoreTooNew"]


class StoreError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageUnavailable(StoreError):
    def __init__(self, message: str = "", *, outage: bool = False) -> None:
        super().__init__(
            message
            or "the gateway's store is unavailable, so no limit can be checked and nothing "
            "was admitted or charged; retry in a few seconds"
        )
        self.outage = outage


class StoreTooNew(StoreError):
    pass
