"""Path and query parameters shared by the routes, with their limits."""

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api.access import Caller, caller_from
from uploads_core.models import (
    MAX_EXPIRES_IN,
    MAX_ID,
    MAX_PAGE_SIZE,
    MAX_SKIP,
    SUB_PATTERN,
    ErrorDetail,
    ImageStatus,
)
from uploads_core.telemetry import logger

DatasetId = Annotated[int, Path(gt=0, le=MAX_ID, description="Dataset id (positive integer)")]
ImageId = Annotated[int, Path(gt=0, le=MAX_ID, description="Image id (positive integer)")]
MemberSub = Annotated[
    str, Path(pattern=SUB_PATTERN, description="A member's `sub` (their tokens' subject), 1..255 characters")
]
ExpiresIn = Annotated[int, Query(ge=1, le=MAX_EXPIRES_IN, description="Lifetime of presigned URLs, seconds")]
Skip = Annotated[
    int, Query(ge=0, le=MAX_SKIP, description="Items to skip (at most 10,000: page deeper with `cursor`)")
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")]
StatusFilter = Annotated[ImageStatus | None, Query(description="Only images with this status")]
LocationFilter = Annotated[
    bool | None,
    Query(description="`true`: only images whose original carries GPS coordinates; `false`: only the others"),
]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="Value of a previous page's X-Next-Cursor header"),
]

_ERRORS = {
    400: "Malformed JSON body, or a cursor this API did not issue for this listing",
    403: "AuthMode=jwt: the caller's role in the dataset does not allow this (the role needed is named)",
    404: "No such image or dataset, or (AuthMode=jwt) the caller is not a member of its dataset",
    409: "The current state (the image's status, the dataset's members) does not allow this",
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


def caller(router: APIGatewayHttpRouter) -> Caller:
    """Who calls (their token's `sub` with AuthMode=jwt), logged with every line of the request."""
    who = caller_from(router.current_event.request_context.authorizer.jwt_claim)
    logger.append_keys(sub=who.sub)
    return who
