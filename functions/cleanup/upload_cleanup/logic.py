"""Removing uploads left `uploading` for too long."""

from datetime import datetime, timedelta

from pydantic import BaseModel

from uploads_core import images_bucket, images_table
from uploads_core.models import ImageStatus, UtcDateTime

# S3's DeleteObjects takes up to 1000 keys.
_DELETE_BATCH = 1000


class CleanupReport(BaseModel):
    cutoff: UtcDateTime
    found: int
    removed: int
    kept: int  # changed status meanwhile: a late upload wins


def remove_stale_uploads(now: datetime, stale_after: timedelta) -> CleanupReport:
    """Every `uploading` record created before `now - stale_after` goes, with its objects.

    The record is deleted first, on the condition that it is still `uploading`; only then its
    object and thumbnail. The other order could delete the object of an upload that the S3
    trigger accepts in between, leaving an `uploaded` record with nothing behind it. An object
    PUT after its record is gone is an orphan, and the S3 trigger deletes orphans.
    """
    cutoff = now - stale_after
    found = removed = 0
    keys: list[str | None] = []
    for image in images_table.query_stale_uploads(cutoff):
        found += 1
        if images_table.delete_if_status(image, ImageStatus.UPLOADING):
            removed += 1
            keys += [image.s3_key, image.thumbnail_key]
        if len(keys) >= _DELETE_BATCH:
            images_bucket.delete_files(keys)
            keys = []
    images_bucket.delete_files(keys)
    return CleanupReport(cutoff=cutoff, found=found, removed=removed, kept=found - removed)
