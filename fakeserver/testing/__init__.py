"""Test harness for code that calls Segmind: the fake answering in-process or as a server.

    from fakeserver.testing import mock_segmind

- `mock_segmind()` (`mock.py`): while active, `requests` and `httpx` calls to Segmind's
  hosts are answered by an in-process fake (other hosts pass through); yields a
  `SegmindMock` to steer it.
- `FakeServer` (`server.py`): the fake as a real process on a free loopback port, for code
  running in another process.
- `Gateway` (`gateway.py`): the gateway (`python -m proxy`) as a process in front of a
  `FakeServer`, with a team key.
- `PRODUCT_PAGE_SCRIPT`: the product page's sample script, to run under the mock.
- The pytest plugin (`fakeserver.pytest_plugin`, entry point `pytest11`) turns these into
  the fixtures `segmind_fake`, `segmind_server` and `segmind_gateway`.

Needs the `testing` extra: `pip install 'segmind-character-gateway[testing]'`. Like the
rest of `fakeserver`, it imports neither `client` nor `proxy`: the gateway is started as a
command.
"""

from pathlib import Path

from .mock import MOCK_KEY, SEGMIND_URL, SegmindMock, active_mock, mock_segmind
from .stall import SegmindClockWarning

__all__ = [
    "MOCK_KEY",
    "PRODUCT_PAGE_SCRIPT",
    "SEGMIND_URL",
    "SegmindClockWarning",
    "SegmindMock",
    "active_mock",
    "mock_segmind",
]

#: The sample script of Segmind's product page for this workflow, verbatim: a file to run
#: (`runpy.run_path(str(PRODUCT_PAGE_SCRIPT), run_name="__main__")`), shipped in the package.
PRODUCT_PAGE_SCRIPT = Path(__file__).with_name("product_page_sample.py.txt")
