"""Kept outputs, the pure parts: what a COMPLETED run's output document lists
(`output_items`), what a file's first bytes say it is (`sniff`), which hosts outputs may be
copied from (`host_allowed`), and the signed URLs the gateway hands out for the copies
(`sign_output`, `check_signature`).

A signed URL names the object (its SHA-256), the team it was handed to and an expiry; its
signature is an HMAC-SHA-256 of the three under the gateway's own secret, so changing any of
them, or a URL of another team's, gives a 403; no header is needed to fetch it, so a
`<video src>` or a plain `curl -O` works.

It must never: accept a signature by a comparison that leaks timing, or a key it did not
make (`proxy.objects` keys only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = [
    "KeptOutput",
    "OutputItem",
    "check_signature",
    "dump_kept",
    "host_allowed",
    "load_kept",
    "output_items",
    "sign_output",
    "sniff",
]

SNIFF_BYTES: Final = 16
OBJECT_HEX = re.compile(r"[0-9a-f]{64}")
KINDS: Final = ("video", "image")  # the output types whose files are kept


@dataclass(frozen=True)
class OutputItem:
    """One entry of Segmind's output document that points at a file."""

    index: int  # its place in the document
    keyname: str
    kind: str  # "video" or "image"
    url: str


def output_items(output: str | None) -> list[OutputItem]:
    """The files a COMPLETED run's output document points at (video or image entries with
    an http(s) URL); anything else in it (text, an unknown shape) is left as it is."""
    try:
        document = json.loads(output or "")
    except ValueError:
        return []
    if not isinstance(document, list):
        return []
    items = []
    for index, entry in enumerate(document):
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), dict):
            continue
        value = entry["value"]
        url, kind = value.get("data"), value.get("type")
        if kind in KINDS and isinstance(url, str) and url.startswith(("http://", "https://")):
            items.append(OutputItem(index, str(entry.get("keyname", "")), kind, url))
    return items


@dataclass(frozen=True)
class KeptOutput:
    """A copy the gateway holds of one output file."""

    index: int
    keyname: str
    kind: str
    source: str  # Segmind's URL it was copied from
    sha256: str
    size: int
    content_type: str


def dump_kept(kept: list[KeptOutput]) -> str:
    return json.dumps([asdict(k) for k in kept], separators=(",", ":"))


def load_kept(text: str | None) -> list[KeptOutput]:
    if not text:
        return []
    return [KeptOutput(**entry) for entry in json.loads(text)]


# (kind, content type, test on the first bytes)
_SIGNATURES: Final[tuple[tuple[str, str, Any], ...]] = (
    ("video", "video/mp4", lambda h: h[4:8] == b"ftyp" and h[8:11] != b"qt "),
    ("video", "video/quicktime", lambda h: h[4:12] == b"ftypqt  "),
    ("video", "video/webm", lambda h: h.startswith(b"\x1a\x45\xdf\xa3")),
    ("image", "image/png", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image", "image/jpeg", lambda h: h.startswith(b"\xff\xd8\xff")),
    ("image", "image/webp", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ("image", "image/gif", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
)


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, content type) of a file by its first `SNIFF_BYTES` bytes, or None."""
    for kind, content_type, test in _SIGNATURES:
        if test(head):
            return kind, content_type
    return None


def host_allowed(host: str, patterns: list[str]) -> bool:
    """Whether `host` is one of `patterns`: a name exactly, or "*.example.com" for its
    subdomains (not example.com itself)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().strip().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _mac(secret: bytes, sha256: str, team: str, expires: int) -> str:
    message = f"{sha256}\n{team}\n{expires}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_output(secret: bytes, sha256: str, team: str, expires: int) -> str:
    """The signature of a URL handing `sha256` to `team` until `expires` (epoch seconds)."""
    return _mac(secret, sha256, team, expires)


def check_signature(
    secret: bytes, sha256: str, team: str, expires: str, signature: str, now: float
) -> str | None:
    """None if the URL is good; else why it is refused (said in its 403)."""
    if not OBJECT_HEX.fullmatch(sha256) or not expires.isdigit() or not team:
        return "this output URL is malformed; ask the gateway for the run again for a fresh one"
    expected = _mac(secret, sha256, team, int(expires))
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "this output URL's signature does not match; use the URL exactly as handed out"
    if int(expires) <= now:
        return "this output URL has expired; poll the request again for fresh URLs"
    return None
