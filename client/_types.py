"""Type aliases shared by the client's modules (one place, like httpx's `_types.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

#: Workflow inputs as a plain mapping (used for workflows other than the character one).
RawInputs: TypeAlias = Mapping[str, Any]

#: Headers as received by a webhook endpoint (any mapping of names to values).
HeaderMapping: TypeAlias = Mapping[str, str]
