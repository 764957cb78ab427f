"""Test harness for code that calls Segmind: the fake answering in-process or as a server.

    from fakeserver.testing import mock_segmind

- `mock_segmind()` (`mock.py`): while active, `requests` and `httpx` calls to Segmind's
  hosts are answered by an in-process fake (other hosts pass through); yields a
  `SegmindMock` to steer it.
- `FakeServer` (`server.py`): the fake as a real process on a free loopback port, for code
  running in another process.
- `Gateway` (`gateway.py`): the gateway (`python -m proxy`) as a process in front of a
  `FakeServer`, with a team key.
- The pytest plugin (`fakeserver.pytest_plugin`, entry point `pytest11`) turns these into
  the fixtures `segmind_fake`, `segmind_server` and `segmind_gateway`.

Needs the `testing` extra: `pip install 'segmind-character-gateway[testing]'`. Like the
rest of `fakeserver`, it imports neither `client` nor `proxy`: the gateway is started as a
command.
"""

from .mock import MOCK_KEY, SEGMIND_URL, SegmindMock, active_mock, mock_segmind

__all__ = ["MOCK_KEY", "SEGMIND_URL", "SegmindMock", "active_mock", "mock_segmind"]
