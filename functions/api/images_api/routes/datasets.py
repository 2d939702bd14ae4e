"""Routes under /datasets/{dataset_id}/images."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api import logic
from images_api.routes.params import Cursor, DatasetId, ExpiresIn, Limit, Skip, StatusFilter
from uploads_core.models import (
    DEFAULT_EXPIRES_IN,
    ConfirmUploadRequest,
    ConfirmUploadResponse,
    Image,
    ImageWithUrl,
    PrepareUploadRequest,
    PrepareUploadResponse,
)

router = APIGatewayHttpRouter()


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
