"""The refusal a webhook URL the gateway will not call raises, wherever in the guard it is
found (its syntax, its address, its DNS answers).

It holds the exception only: it must never check anything itself, and its messages must
never repeat credentials, paths or query strings (where webhook secrets live).
"""

from __future__ import annotations

from proxy.core.ssrf.policy import IPAddress

__all__ = ["WebhookUrlError"]


class WebhookUrlError(ValueError):
    """A webhook URL the gateway will not call; the message says what is wrong and what
    to do, and never repeats credentials, the path or the query."""

    def __init__(self, message: str, *, address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return self.message
