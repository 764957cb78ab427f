"""Which output store the `outputs` setting opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.core.config import ProxySettings
from proxy.objects import ObjectStoreError, open_object_store
from proxy.objects.folder import FolderStore


@pytest.fixture
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default itself, not the suite's PROXY_OUTPUTS=none (tests/conftest.py)."""
    monkeypatch.delenv("PROXY_OUTPUTS", raising=False)


@pytest.mark.usefixtures("unset")
def test_by_default_a_folder_beside_a_sqlite_store(tmp_path: Path) -> None:
    settings = ProxySettings(db=str(tmp_path / "gateway.sqlite"))
    objects = open_object_store(settings)
    assert isinstance(objects, FolderStore)
    assert objects.root == tmp_path / "outputs"
    assert (tmp_path / "outputs" / "tmp").is_dir()


@pytest.mark.usefixtures("unset")
def test_by_default_none_beside_postgresql_whose_replicas_share_no_folder() -> None:
    settings = ProxySettings(db="postgresql://gateway@db.internal:5432/gateway")
    assert settings.outputs_target is None
    assert open_object_store(settings) is None


def test_a_folder_given_explicitly_is_used_with_postgresql(tmp_path: Path) -> None:
    settings = ProxySettings(db="postgresql://gateway@db/gateway", outputs=str(tmp_path / "m"))
    assert isinstance(open_object_store(settings), FolderStore)


def test_none_turns_outputs_off(tmp_path: Path) -> None:
    assert open_object_store(ProxySettings(db=str(tmp_path / "g.sqlite"), outputs="none")) is None


def test_another_scheme_is_refused_saying_what_is_accepted() -> None:
    with pytest.raises(ObjectStoreError, match=r"neither a folder nor s3://bucket/prefix"):
        open_object_store(ProxySettings(outputs="gs://bucket/prefix"))
