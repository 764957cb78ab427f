"""The store as the rest of the gateway sees it: `Store`, whose named async methods are each
one unit of work of the rules (`proxy/rules/`), run by the backend the `db` setting picks
(`proxy/db/`).

Belongs here: the named units of work and the choice of a backend from a URL. May import
`proxy.rules`, `proxy.db` and `proxy.core`; never starlette, httpx or anything above.
"""

from proxy.store.units import Store, open_store

__all__ = ["Store", "open_store"]
