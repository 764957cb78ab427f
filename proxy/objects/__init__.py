"""The output store: where the gateway keeps the videos of completed runs, behind one small
interface (`ObjectStore`) with two backends, a folder (`folder`) and S3-compatible object
storage (`s3`), chosen by the `outputs` setting (`factory.open_object_store`).

Objects are content addressed: an object's key is its SHA-256, so identical bytes are
stored once and a key never names two contents. Content is written under a temporary name
and only then given its key, so nothing partial is ever readable under a key.

Belongs here: storing, reading, sizing and deleting bytes by key. May import `proxy.core`
only; never the store of records, HTTP frameworks, or anything above. It must never hold a
whole object in memory, nor log credentials (the S3 backend reads them from the AWS_*
variables and passes them to the library only).
"""

from proxy.objects.errors import (
    ObjectMissing,
    ObjectStoreError,
    ObjectStoreUnavailable,
    ObjectTooLarge,
    SourceFailed,
)
from proxy.objects.factory import open_object_store
from proxy.objects.interface import ObjectInfo, ObjectStore, StoredObject, key_of

__all__ = [
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreUnavailable",
    "ObjectTooLarge",
    "SourceFailed",
    "StoredObject",
    "key_of",
    "open_object_store",
]
