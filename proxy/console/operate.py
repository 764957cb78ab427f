"""The console's buttons run the admin operations (`proxy/services/operations.py`), the same ones
the admin API and the command line run; their refusals become a notice on the page."""

from __future__ import annotations

from typing import Any

from proxy.console.layout import Visit
from proxy.core.errors import GatewayError
from proxy.db import StoreError
from proxy.edge.responses import answer_for
from proxy.rules import RuleError
from proxy.services.operations import OPERATIONS, Operator

__all__ = ["Refused", "run"]


class Refused(Exception):
    """An operation said no; `message` says why, for the page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def run(visit: Visit, operation: str, **args: Any) -> dict[str, Any]:
    gateway = visit.gateway
    operator = Operator(gateway.store, gateway.clock.now(), gateway.settings)
    try:
        return await OPERATIONS[operation](operator, args)
    except GatewayError as exc:
        raise Refused(exc.message) from None
    except (RuleError, StoreError) as exc:
        raise Refused(answer_for(exc).message) from None
