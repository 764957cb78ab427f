"""Decoding a COMPLETED job's `output`, which the API sends as a JSON document in a string.

The documented shape is a list of `{"keyname": name, "value": {"data": URL, "type": kind}}`;
this workflow's key names are not documented, so decoding is tolerant: a mapping of names to
values, bare URL strings and double-encoded strings are accepted, and anything else is kept
raw. It never raises, whatever the input (a hypothesis test holds it to that).

Scene numbers come from a key name's trailing digits (`Scene_3`, `video_3` -> 3), else from
a number after the word "scene" (`Scene_3_Video` -> 3); videos without one, or whose number
is taken, fill the lowest free numbers in list order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["OutputItem", "decode_output"]

_TRAILING_DIGITS = re.compile(r"(\d{1,6})\s*$")
_SCENE_DIGITS = re.compile(r"scene[\s_-]*(\d{1,6})", re.IGNORECASE)
_VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".m4v", ".avi", ".gif")
#: Highest scene number taken from a key name; larger trailing numbers are not scenes.
MAX_SCENE = 1000
_MAX_DEPTH = 3


@dataclass(frozen=True)
class OutputItem:
    """One output of the workflow: a node's name, its value, and the scene it belongs to."""

    keyname: str | None
    url: str | None
    type: str | None
    value: Any
    scene: int | None = None

    @property
    def is_video(self) -> bool:
        if self.url is None:
            return False
        if self.type is not None:
            return self.type.lower() == "video"
        return urlsplit(self.url).path.lower().endswith(_VIDEO_SUFFIXES)


def decode_output(output: Any) -> tuple[tuple[OutputItem, ...], Any]:
    """The output items, with scenes assigned to videos, and the decoded raw document."""
    try:
        document = _parse(output)
        items = _items(document)
        return _assign_scenes(items), document
    except Exception:  # a shape nobody foresaw must not cost the caller the job's result
        return (), output


def _parse(output: Any) -> Any:
    document = output
    for _ in range(_MAX_DEPTH):
        if not isinstance(document, str):
            break
        text = document.strip()
        if not text or text[0] not in '[{"':
            break
        try:
            document = json.loads(text)
        except ValueError:
            break
    return document


def _items(document: Any) -> list[OutputItem]:
    if isinstance(document, list):
        return [item for entry in document if (item := _item(None, entry)) is not None]
    if isinstance(document, Mapping):
        if "keyname" in document or "value" in document or "data" in document:
            single = _item(None, document)
            return [single] if single is not None else []
        return [
            item for key, value in document.items() if (item := _item(str(key), value)) is not None
        ]
    if isinstance(document, str) and _is_url(document):
        return [OutputItem(keyname=None, url=document.strip(), type=None, value=document)]
    return []


def _item(keyname: str | None, entry: Any) -> OutputItem | None:
    if isinstance(entry, str):
        bare = entry.strip() if _is_url(entry) else None
        return OutputItem(keyname=keyname, url=bare, type=None, value=entry)
    if not isinstance(entry, Mapping):
        return OutputItem(keyname=keyname, url=None, type=None, value=entry)
    name = entry.get("keyname", keyname)
    name = str(name) if name is not None else None
    value = entry.get("value", entry)
    if isinstance(value, str):
        value = _parse(value)
    url: str | None = None
    kind: str | None = None
    if isinstance(value, Mapping):
        data = value.get("data", value.get("url"))
        if isinstance(data, str) and _is_url(data):
            url = data.strip()
        raw_kind = value.get("type")
        kind = raw_kind if isinstance(raw_kind, str) else None
    elif isinstance(value, str) and _is_url(value):
        url = value.strip()
    return OutputItem(keyname=name, url=url, type=kind, value=value)


def _is_url(text: str) -> bool:
    text = text.strip()
    if not text.lower().startswith(("http://", "https://")) or any(c.isspace() for c in text):
        return False
    return bool(urlsplit(text).netloc)


def _scene_from_name(keyname: str | None) -> int | None:
    if not keyname:
        return None
    match = _TRAILING_DIGITS.search(keyname) or _SCENE_DIGITS.search(keyname)
    if match is None:
        return None
    number = int(match.group(1))
    return number if 1 <= number <= MAX_SCENE else None


def _assign_scenes(items: list[OutputItem]) -> tuple[OutputItem, ...]:
    taken: set[int] = set()
    scenes: dict[int, int] = {}  # index in items -> scene
    videos = [i for i, item in enumerate(items) if item.is_video]
    for index in videos:
        number = _scene_from_name(items[index].keyname)
        if number is not None and number not in taken:
            taken.add(number)
            scenes[index] = number
    free = 1
    for index in videos:
        if index in scenes:
            continue
        while free in taken:
            free += 1
        taken.add(free)
        scenes[index] = free
    return tuple(
        OutputItem(item.keyname, item.url, item.type, item.value, scenes.get(i))
        for i, item in enumerate(items)
    )
