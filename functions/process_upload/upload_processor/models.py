"""What the S3 trigger works on and what it decides."""

from typing import Literal

from pydantic import BaseModel, Field

from uploads_core.models import ErrorReason

Result = Literal["uploaded", "rejected", "discarded", "orphan_deleted", "stale", "superseded", "ignored"]


class UploadedObject(BaseModel):
    """One S3 ObjectCreated record of the (versioned) images bucket, key already URL-decoded."""

    key: str
    size: int
    etag: str
    sequencer: str
    version_id: str = Field(min_length=1)


class Outcome(BaseModel):
    key: str
    result: Result
    image_id: int | None = None
    width: int | None = None
    height: int | None = None
    error_reason: ErrorReason | None = None
