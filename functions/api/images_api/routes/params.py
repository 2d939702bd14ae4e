"""Path and query parameters shared by the routes, with their limits."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from uploads_core.models import MAX_BATCH, MAX_EXPIRES_IN, MAX_ID, ImageStatus

DatasetId = Annotated[int, Path(gt=0, le=MAX_ID, description="Dataset id (positive integer)")]
ImageId = Annotated[int, Path(gt=0, le=MAX_ID, description="Image id (positive integer)")]
ExpiresIn = Annotated[int, Query(ge=1, le=MAX_EXPIRES_IN, description="Lifetime of presigned URLs, seconds")]
Skip = Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip (prefer `cursor` to page deep)")]
Limit = Annotated[int, Query(ge=1, le=MAX_BATCH, description="Page size")]
StatusFilter = Annotated[ImageStatus | None, Query(description="Only images with this status")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="Value of a previous page's X-Next-Cursor header"),
]
