"""Routes under /images/{image_id}."""

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from images_api import logic
from images_api.routes.params import ExpiresIn, ImageId
from uploads_core.models import (
    DEFAULT_EXPIRES_IN,
    DeleteResult,
    DownloadUrl,
    Image,
    ImagePatch,
)

router = APIGatewayHttpRouter()


@router.get("/images/<image_id>", summary="One image")
def get_image(image_id: ImageId) -> Image:
    return logic.get_image(image_id)


@router.get("/images/<image_id>/download-url", summary="A presigned download URL (409 unless uploaded)")
def download_url(image_id: ImageId, expires_in: ExpiresIn = DEFAULT_EXPIRES_IN) -> DownloadUrl:
    return logic.download_url(image_id, expires_in)


@router.patch("/images/<image_id>", summary="Update width, height or status")
def patch_image(image_id: ImageId, body: ImagePatch) -> Image:
    return logic.patch_image(image_id, body)


@router.delete("/images/<image_id>", summary="Delete the S3 object, then the record")
def delete_image(image_id: ImageId) -> DeleteResult:
    return logic.delete_image(image_id)
