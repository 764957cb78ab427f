"""File names for downloaded outputs: `scene_1.mp4`... never a path a server could steer."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ._output import OutputItem

__all__ = ["file_name"]

_KNOWN_SUFFIXES = frozenset(
    {
        ".mp4",
        ".webm",
        ".mov",
        ".mkv",
        ".m4v",
        ".gif",
        ".png",
        ".jpg",
        ".jpeg",
        ".webp",
        ".txt",
        ".json",
    }
)
_SUFFIX_BY_TYPE = {"video": ".mp4", "image": ".png", "text": ".txt"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(item: OutputItem, index: int) -> str:
    """`scene_N<suffix>` for a video with a scene, else a sanitised key name, else `output_N`."""
    suffix = _suffix(item)
    if item.scene is not None:
        stem = f"scene_{item.scene}"
    else:
        stem = _UNSAFE.sub("_", item.keyname or "").strip("._-")[:64] or f"output_{index + 1}"
    return stem + suffix


def unique_path(directory: Path, name: str, used: set[str]) -> Path:
    stem, dot, suffix = name.partition(".")
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{stem}_{n}{dot}{suffix}"
        n += 1
    used.add(candidate)
    return directory / candidate


def _suffix(item: OutputItem) -> str:
    if item.url:
        suffix = PurePosixPath(unquote(urlsplit(item.url).path)).suffix.lower()
        if suffix in _KNOWN_SUFFIXES:
            return suffix
    return _SUFFIX_BY_TYPE.get((item.type or "").lower(), ".bin")
