"""Removing uploads left `uploading` for too long."""

from datetime import datetime, timedelta

from pydantic import BaseModel

from uploads_core import hashes_table, images_bucket, images_table
from uploads_core.keys import thumbnail_prefix
from uploads_core.models import ImageStatus, UtcDateTime

# Records whose objects are removed together (one DeleteObjects call per 1000 versions).
_BATCH = 100


class CleanupReport(BaseModel):
    cutoff: UtcDateTime
    found: int
    removed: int
    kept: int  # changed status meanwhile: a late upload wins


def remove_stale_uploads(now: datetime, stale_after: timedelta) -> CleanupReport:
    """Every `uploading` record whose upload URL expired before `now - stale_after` goes, with every
    version of its object and its thumbnails.

    Only expired URLs: no PUT can arrive through them any more (a URL lives at most its
    `upload_expires_at`), and the margin covers a transfer that started just before. The record is
    deleted first, on the condition that it is still `uploading`; only then its objects. The other
    order could delete the object of an upload that the S3 trigger accepts in between, leaving an
    `uploaded` record with nothing behind it. An object PUT after its record is gone is an orphan,
    and the S3 trigger deletes orphans.
    """
    cutoff = now - stale_after
    found = removed = 0
    keys: list[str] = []
    prefixes: list[str] = []
    for image in images_table.query_stale_uploads(cutoff):
        found += 1
        if hashes_table.delete_image(image, ImageStatus.UPLOADING):
            removed += 1
            keys.append(image.s3_key)
            prefixes.append(thumbnail_prefix(image.dataset_id, image.id))
        if len(keys) >= _BATCH:
            images_bucket.delete_everything(keys=keys, prefixes=prefixes)
            keys, prefixes = [], []
    images_bucket.delete_everything(keys=keys, prefixes=prefixes)
    return CleanupReport(cutoff=cutoff, found=found, removed=removed, kept=found - removed)
