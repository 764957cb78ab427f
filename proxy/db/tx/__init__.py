"""One unit of work's plain reads and writes, in SQL both dialects run.

`Tx` is what the rules (`proxy/rules/`) see of the store while one transaction is open:
named reads and writes of rows, and locks. It decides nothing: which limit applies, what
a terminal state implies, who may write a run, all that is the rules'. Each backend opens
the transaction, hands the rules a `Tx` over its connection, and commits or rolls back.

`Tx` is composed here of one mixin per subject, each in its own module, all over one
`_Base` (`base.py`: the connection, the dialect, the statement helpers, the row
converters), so a subject's SQL is read in one place and the rules still see one object.

Locks: `lock_team`, `lock_name` and `run_and_lease` take row or advisory locks on
PostgreSQL, held to the end of the transaction; on SQLite the transaction already holds
the whole file (`BEGIN IMMEDIATE`), so they cost nothing there.
"""

from __future__ import annotations

from proxy.db.tx.admission import AdmissionTx
from proxy.db.tx.base import Connection, Cursor
from proxy.db.tx.budget import BudgetTx
from proxy.db.tx.leases import LeasesTx
from proxy.db.tx.locks import LocksTx
from proxy.db.tx.lookup import LookupTx
from proxy.db.tx.meta import MetaTx
from proxy.db.tx.outbox import RESPONSE_EXCERPT, OutboxTx
from proxy.db.tx.outputs import OutputsTx
from proxy.db.tx.runs import RunsTx
from proxy.db.tx.teams import TeamsTx
from proxy.db.tx.usage import UsageTx
from proxy.db.tx.views import ViewsTx

__all__ = ["RESPONSE_EXCERPT", "Connection", "Cursor", "Tx"]


class Tx(
    LocksTx,
    MetaTx,
    TeamsTx,
    AdmissionTx,
    UsageTx,
    RunsTx,
    LeasesTx,
    ViewsTx,
    LookupTx,
    BudgetTx,
    OutboxTx,
    OutputsTx,
):
    """Reads and writes inside one open transaction of `db`, in `dialect`."""
