"""Routes under /images/{image_id}."""

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api import logic
from images_api.routes.params import ExpiresIn, ImageId, caller, responses
from uploads_core.models import (
    DEFAULT_EXPIRES_IN,
    DeleteResult,
    DownloadUrl,
    Image,
    ImagePatch,
)
from uploads_core.telemetry import count, logger

router = APIGatewayHttpRouter()


@router.get("/images/<image_id>", summary="One image", responses=responses(404))
def get_image(image_id: ImageId) -> Image:
    logger.append_keys(image_id=image_id)
    return logic.get_image(caller(router), image_id)


@router.get(
    "/images/<image_id>/download-url",
    summary="A presigned download URL (409 unless uploaded)",
    responses=responses(404, 409),
)
def download_url(image_id: ImageId, expires_in: ExpiresIn = DEFAULT_EXPIRES_IN) -> DownloadUrl:
    logger.append_keys(image_id=image_id)
    return logic.download_url(caller(router), image_id, expires_in)


@router.patch(
    "/images/<image_id>", summary="Update width, height or status", responses=responses(400, 403, 404, 409)
)
def patch_image(image_id: ImageId, body: ImagePatch) -> Image:
    logger.append_keys(image_id=image_id)
    image = logic.patch_image(caller(router), image_id, body)
    logger.info("Image updated", extra={"changes": body.model_dump(exclude_unset=True, mode="json")})
    return image


@router.delete(
    "/images/<image_id>", summary="Delete the S3 object, then the record", responses=responses(403, 404)
)
def delete_image(image_id: ImageId) -> DeleteResult:
    logger.append_keys(image_id=image_id)
    result = logic.delete_image(caller(router), image_id)
    logger.info("Image deleted")
    count("ImagesDeleted")
    return result
