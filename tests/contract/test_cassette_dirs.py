"""A vendored cassette folder named relatively is found from the test file that names it,
not from wherever pytest was started (`client.cassettes.resolve_dir`). This module has a
`cassettes/` beside it (a link to the repository's), as another team's test would."""

from __future__ import annotations

from pathlib import Path

import pytest

from client import Client
from client.cassettes import HOOK_URL, cassette_dir, cassette_path, make_vcr, recorded_webhook

BESIDE_THIS_FILE = Path(__file__).resolve().parent / "cassettes"


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a directory that has no cassettes/ of its own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_relative_folder_is_found_from_the_calling_file(elsewhere: Path) -> None:
    path = cassette_path("success", directory="cassettes")
    assert path == (BESIDE_THIS_FILE / "success.yaml").resolve()
    assert path.read_bytes() == (cassette_dir() / "success.yaml").read_bytes()


def test_recorded_webhook_and_make_vcr_resolve_from_the_calling_file_too(elsewhere: Path) -> None:
    assert recorded_webhook(directory="cassettes").url == HOOK_URL
    with (
        make_vcr(cassette_dir="cassettes").use_cassette("success.yaml"),
        Client(api_key="any", base_url="https://api.segmind.com") as client,
    ):
        assert sorted(client.run({}, poll_interval=0.01).videos) == [1, 2, 3, 4]


def test_absolute_folders_are_used_as_they_are(elsewhere: Path) -> None:
    assert cassette_path("success", directory=cassette_dir()) == cassette_dir() / "success.yaml"
    with pytest.raises(FileNotFoundError, match="relative folder is found from your test file"):
        cassette_path("success", directory=elsewhere)
