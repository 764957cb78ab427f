"""Which request ids a notification names: found anywhere in the body, bounded in count
and in the work of finding them. (End to end: tests/e2e/test_upstream_hints_e2e.py.)"""

from __future__ import annotations

import uuid

from proxy.edge.events import MAX_IDS, upstream_ids

SEGMIND_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_an_id_is_found_wherever_the_body_puts_it() -> None:
    for body in (
        {"request_id": SEGMIND_ID},
        {"event_type": "GRAPH_RUN", "data": {"request_id": SEGMIND_ID, "status": "COMPLETED"}},
        [{"x": [[{"id": SEGMIND_ID}]]}],
        {"poll_url": f"https://api.segmind.com/workflows/request/{SEGMIND_ID}"},
        SEGMIND_ID,
    ):
        assert SEGMIND_ID in upstream_ids(body)


def test_what_cannot_be_an_id_is_left_out() -> None:
    found = upstream_ids({"n": 12345678901, "ok": True, "none": None, "short": "abc",
                          "spaced": "not an id at all", "x": 1.5})  # fmt: skip
    assert found == []


def test_top_level_fields_come_first_and_the_count_is_bounded() -> None:
    noise = [uuid.uuid4().hex for _ in range(5 * MAX_IDS)]
    found = upstream_ids({"outputs": [[n] for n in noise], "request_id": SEGMIND_ID})
    assert len(found) == MAX_IDS
    assert found[0] == SEGMIND_ID
    assert upstream_ids([SEGMIND_ID] * 1000) == [SEGMIND_ID]  # distinct ids only
