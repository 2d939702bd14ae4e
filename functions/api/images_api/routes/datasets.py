"""Routes under /datasets/{dataset_id}/images."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api import logic
from images_api.routes.params import (
    Cursor,
    DatasetId,
    ExpiresIn,
    Limit,
    LocationFilter,
    Skip,
    StatusFilter,
    caller,
    responses,
)
from uploads_core.models import (
    DEFAULT_EXPIRES_IN,
    ConfirmUploadRequest,
    ConfirmUploadResponse,
    HashLookupRequest,
    HashLookupResponse,
    Image,
    ImageWithUrl,
    PrepareUploadRequest,
    PrepareUploadResponse,
)
from uploads_core.telemetry import count, logger

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


@router.post(
    "/datasets/<dataset_id>/images/prepare-upload",
    summary="Reserve ids and presigned PUT URLs",
    responses=responses(400, 403, 404),
)
def prepare_upload(
    dataset_id: DatasetId, body: PrepareUploadRequest, expires_in: ExpiresIn = DEFAULT_EXPIRES_IN
) -> PrepareUploadResponse:
    logger.append_keys(dataset_id=dataset_id)
    response = logic.prepare_upload(caller(router), dataset_id, body, expires_in)
    count("ImagesPrepared", len(response.uploads))
    logger.info("Upload prepared", extra={"image_ids": [u.image_id for u in response.uploads][:50]})
    return response


@router.post(
    "/datasets/<dataset_id>/images/confirm-upload",
    summary="Check uploaded objects exist in S3",
    responses=responses(400, 403, 404),
)
def confirm_upload(dataset_id: DatasetId, body: ConfirmUploadRequest) -> ConfirmUploadResponse:
    logger.append_keys(dataset_id=dataset_id)
    response = logic.confirm_upload(caller(router), dataset_id, body.image_ids)
    logger.info("Uploads confirmed", extra=response.model_dump(exclude={"message"}))
    count("ImagesConfirmed", response.updated_count)
    return response


@router.post(
    "/datasets/<dataset_id>/images/lookup",
    summary="Which of these SHA-256 hashes an image of the dataset holds",
    responses=responses(400, 403, 404),
)
def lookup_images(dataset_id: DatasetId, body: HashLookupRequest) -> HashLookupResponse:
    logger.append_keys(dataset_id=dataset_id)
    return logic.lookup_hashes(caller(router), dataset_id, body.sha256)


@router.get(
    "/datasets/<dataset_id>/images",
    summary="List a dataset's images (no URLs)",
    responses=responses(400, 403, 404, paged=True),
)
def list_images(
    dataset_id: DatasetId,
    skip: Skip = 0,
    limit: Limit = 100,
    status: StatusFilter = None,
    cursor: Cursor = None,
    has_location: LocationFilter = None,
) -> Response[list[Image]]:
    logger.append_keys(dataset_id=dataset_id)
    page = logic.list_images(caller(router), dataset_id, status, skip, limit, cursor, has_location)
    return _page_response(page.items, page.next_cursor)


@router.get(
    "/datasets/<dataset_id>/images/with-urls",
    summary="List images with presigned download URLs",
    responses=responses(400, 403, 404, paged=True),
)
def list_images_with_urls(
    dataset_id: DatasetId,
    skip: Skip = 0,
    limit: Limit = 100,
    status: StatusFilter = None,
    expires_in: ExpiresIn = DEFAULT_EXPIRES_IN,
    cursor: Cursor = None,
    has_location: LocationFilter = None,
) -> Response[list[ImageWithUrl]]:
    logger.append_keys(dataset_id=dataset_id)
    page = logic.list_images(caller(router), dataset_id, status, skip, limit, cursor, has_location)
    items = logic.with_download_urls(page.items, expires_in)
    return _page_response(items, page.next_cursor)
