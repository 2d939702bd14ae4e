"""Path and query parameters shared by the routes, with their limits."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from uploads_core.models import MAX_BATCH, MAX_EXPIRES_IN, MAX_ID, MAX_SKIP, ErrorDetail, ImageStatus

DatasetId = Annotated[int, Path(gt=0, le=MAX_ID, description="Dataset id (positive integer)")]
ImageId = Annotated[int, Path(gt=0, le=MAX_ID, description="Image id (positive integer)")]
ExpiresIn = Annotated[int, Query(ge=1, le=MAX_EXPIRES_IN, description="Lifetime of presigned URLs, seconds")]
Skip = Annotated[
    int, Query(ge=0, le=MAX_SKIP, description="Items to skip (at most 10,000: page deeper with `cursor`)")
]
Limit = Annotated[int, Query(ge=1, le=MAX_BATCH, description="Page size")]
StatusFilter = Annotated[ImageStatus | None, Query(description="Only images with this status")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="Value of a previous page's X-Next-Cursor header"),
]

_ERRORS = {
    400: "Malformed JSON body, or a cursor this API did not issue for this listing",
    404: "No image with this id",
    409: "The image's current status does not allow this",
}


_NEXT_CURSOR = {
    "X-Next-Cursor": {
        "description": "Present when more items follow: pass it back as `?cursor=` for the next page",
        "schema": {"type": "string"},
    }
}


def responses(*error_codes: int, paged: bool = False) -> dict:
    """OpenAPI entries: 200 (its schema from the return annotation) and the `{"detail"}` errors."""
    ok: dict = {"description": "Successful response"}
    if paged:
        ok["headers"] = _NEXT_CURSOR
    return {
        200: ok,
        **{
            code: {"description": _ERRORS[code], "content": {"application/json": {"model": ErrorDetail}}}
            for code in error_codes
        },
    }
