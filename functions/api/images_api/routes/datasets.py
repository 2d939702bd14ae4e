"""Routes under /datasets/{dataset_id}/images."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api import logic
from uploads_core.models import (
    DEFAULT_EXPIRES_IN,
    MAX_BATCH,
    MAX_EXPIRES_IN,
    MAX_ID,
    ConfirmUploadRequest,
    ConfirmUploadResponse,
    Image,
    ImageStatus,
    ImageWithUrl,
    PrepareUploadRequest,
    PrepareUploadResponse,
)

router = APIGatewayHttpRouter()

DatasetId = Annotated[int, Path(gt=0, le=MAX_ID, description="Dataset id (positive integer)")]
ExpiresIn = Annotated[int, Query(ge=1, le=MAX_EXPIRES_IN, description="Lifetime of presigned URLs, seconds")]
Skip = Annotated[int, Query(ge=0, le=1_000_000, description="Items to skip (prefer `cursor` to page deep)")]
Limit = Annotated[int, Query(ge=1, le=MAX_BATCH, description="Page size")]
StatusFilter = Annotated[ImageStatus | None, Query(description="Only images with this status")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="Value of a previous page's X-Next-Cursor header"),
]


def _page_response(items: list[Image], next_cursor: str | None) -> Response:
    """The note's bare JSON array, with the next page's cursor in a header."""
    headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
    return Response(
        status_code=200,
        content_type="application/json",
        body=[item.model_dump(mode="json") for item in items],
        headers=headers,
    )


@router.post("/datasets/<dataset_id>/images/prepare-upload", summary="Reserve ids and presigned PUT URLs")
def prepare_upload(
    dataset_id: DatasetId, body: PrepareUploadRequest, expires_in: ExpiresIn = DEFAULT_EXPIRES_IN
) -> PrepareUploadResponse:
    return logic.prepare_upload(dataset_id, body, expires_in)


@router.post("/datasets/<dataset_id>/images/confirm-upload", summary="Check uploaded objects exist in S3")
def confirm_upload(dataset_id: DatasetId, body: ConfirmUploadRequest) -> ConfirmUploadResponse:
    return logic.confirm_upload(dataset_id, body.image_ids)


@router.get("/datasets/<dataset_id>/images", summary="List a dataset's images (no URLs)")
def list_images(
    dataset_id: DatasetId,
    skip: Skip = 0,
    limit: Limit = 100,
    status: StatusFilter = None,
    cursor: Cursor = None,
) -> Response[list[Image]]:
    page = logic.list_images(dataset_id, status, skip, limit, cursor)
    return _page_response(page.items, page.next_cursor)


@router.get("/datasets/<dataset_id>/images/with-urls", summary="List images with presigned download URLs")
def list_images_with_urls(
    dataset_id: DatasetId,
    skip: Skip = 0,
    limit: Limit = 100,
    status: StatusFilter = None,
    expires_in: ExpiresIn = DEFAULT_EXPIRES_IN,
    cursor: Cursor = None,
) -> Response[list[ImageWithUrl]]:
    page = logic.list_images(dataset_id, status, skip, limit, cursor)
    items = logic.with_download_urls(page.items, expires_in)
    return _page_response(items, page.next_cursor)
