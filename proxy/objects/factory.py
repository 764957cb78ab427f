"""`open_object_store`: the backend the `outputs` setting names (above both backends, so
neither imports its own factory back). The S3 backend is imported only when chosen."""

from __future__ import annotations

from proxy.core.config import ProxySettings
from proxy.objects.errors import ObjectStoreError
from proxy.objects.interface import ObjectStore

__all__ = ["open_object_store"]


def open_object_store(settings: ProxySettings) -> ObjectStore | None:
    """The output store, or None when outputs are not kept."""
    target = settings.outputs_target
    if target is None:
        return None
    if target.startswith(("s3://", "s3a://")):
        from proxy.objects.s3 import BucketStore

        return BucketStore(target)
    if "://" in target:
        raise ObjectStoreError(
            f"outputs {target!r} is neither a folder nor s3://bucket/prefix; "
            "use one of those, or none"
        )
    from proxy.objects.folder import FolderStore

    return FolderStore(target)
