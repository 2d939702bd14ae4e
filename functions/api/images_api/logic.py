"""What the API does, in terms of pydantic models; storage details stay in uploads_core."""

from itertools import islice

from images_api import cursor as cursors
from uploads_core import images_bucket, images_table
from uploads_core.errors import ConflictError, ImageNotFoundError
from uploads_core.keys import image_key
from uploads_core.models import (
    ConfirmUploadResponse,
    DeleteResult,
    DownloadUrl,
    Image,
    ImagePage,
    ImagePatch,
    ImageStatus,
    ImageWithUrl,
    PrepareUploadRequest,
    PrepareUploadResponse,
    UploadTicket,
    utc_now,
)


def prepare_upload(dataset_id: int, request: PrepareUploadRequest, expires_in: int) -> PrepareUploadResponse:
    """One counter update reserves the ids, batch writes store the records, then URLs are signed."""
    files = request.files
    ids = images_table.reserve_ids(len(files))
    now = utc_now()
    images = [
        Image(
            id=image_id,
            dataset_id=dataset_id,
            filename=spec.filename,
            s3_key=image_key(dataset_id, spec.filename),
            file_size=spec.file_size,
            mime_type=spec.mime_type,
            status=ImageStatus.UPLOADING,
            created_at=now,
            updated_at=now,
        )
        for image_id, spec in zip(ids, files, strict=True)
    ]
    images_table.put_new(images)
    return PrepareUploadResponse(
        uploads=[
            UploadTicket(
                image_id=image.id,
                upload_url=images_bucket.generate_presigned_upload_url(
                    image.s3_key, image.mime_type, image.file_size, expires_in
                ),
                s3_key=image.s3_key,
                expires_in=expires_in,
            )
            for image in images
        ]
    )


def _matches_declaration(image: Image, found: images_bucket.ObjectInfo) -> bool:
    # Real S3 enforces the signed type and length; emulators and other writers may not.
    return found.size == image.file_size and (found.content_type in (None, image.mime_type))


def confirm_upload(dataset_id: int, image_ids: list[int]) -> ConfirmUploadResponse:
    """Checks each object with a concurrent HeadObject: present → uploaded, absent → error.

    Ids of other datasets, or with no record, are neither touched nor counted. A verdict of the
    S3 trigger, which read the bytes, outranks this existence check: a rejected image stays so.
    """
    images = [i for i in images_table.get_many(image_ids) if i.dataset_id == dataset_id]
    found = images_bucket.head_many(i.s3_key for i in images)
    confirmed = 0
    for image in images:
        if image.error_reason is not None:
            continue
        info = found[image.s3_key]
        ok = info is not None and _matches_declaration(image, info)
        target = ImageStatus.UPLOADED if ok else ImageStatus.ERROR
        if image.status != target:
            # Conditional on the status read: a concurrent change (the trigger's) wins over this one.
            updated = images_table.update(
                image, {"status": target}, expected_status=image.status, unjudged_only=True
            )
            if updated is None:
                current = images_table.get(image.id)
                ok = current is not None and current.status == ImageStatus.UPLOADED
        confirmed += ok
    return ConfirmUploadResponse(
        message=f"Successfully confirmed {confirmed} uploads",
        updated_count=confirmed,
        total_requested=len(image_ids),
    )


def list_images(
    dataset_id: int, status: ImageStatus | None, skip: int, limit: int, cursor: str | None
) -> ImagePage:
    """A page in id order; one extra item tells whether a next page exists."""
    after_id = cursors.decode(cursor, dataset_id, status) if cursor else 0
    items = list(
        islice(images_table.query_dataset(dataset_id, status, after_id, skip + limit + 1), skip, None)
    )
    page, more = items[:limit], len(items) > limit
    next_cursor = cursors.encode(dataset_id, status, page[-1].id) if more else None
    return ImagePage(items=page, next_cursor=next_cursor)


def _with_urls(image: Image, expires_in: int) -> ImageWithUrl:
    item = ImageWithUrl.model_validate(image, from_attributes=True)
    if image.status == ImageStatus.UPLOADED:
        item.download_url = images_bucket.generate_presigned_download_url(image.s3_key, expires_in)
        item.url_expires_in = expires_in
        if image.thumbnail_key:
            item.thumbnail_url = images_bucket.generate_presigned_download_url(
                image.thumbnail_key, expires_in
            )
    return item


def with_download_urls(images: list[Image], expires_in: int) -> list[ImageWithUrl]:
    """Signs URLs locally for uploaded images only: no extra request per image."""
    return [_with_urls(image, expires_in) for image in images]


def get_image(image_id: int) -> Image:
    image = images_table.get(image_id)
    if image is None:
        raise ImageNotFoundError(image_id)
    return image


def download_url(image_id: int, expires_in: int) -> DownloadUrl:
    image = get_image(image_id)
    if image.status != ImageStatus.UPLOADED:
        raise ConflictError(f"Image {image_id} is '{image.status}', not 'uploaded': nothing to download yet")
    return DownloadUrl(
        download_url=images_bucket.generate_presigned_download_url(image.s3_key, expires_in),
        expires_in=expires_in,
    )


def patch_image(image_id: int, patch: ImagePatch) -> Image:
    image = get_image(image_id)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("status") == ImageStatus.UPLOADED and not images_bucket.file_exists(image.s3_key):
        raise ConflictError(f"Image {image_id} cannot be 'uploaded': its object is not in S3")
    updated = images_table.update(image, changes, expected_status=image.status)
    if updated is None:
        raise ConflictError(f"Image {image_id} changed while it was being updated; retry")
    return updated


def delete_image(image_id: int) -> DeleteResult:
    """Objects first, then record: a failure in between leaves a record to retry, never an orphan."""
    image = get_image(image_id)
    images_bucket.delete_files([image.s3_key, image.thumbnail_key])
    if not images_table.delete(image):
        raise ImageNotFoundError(image_id)
    return DeleteResult(message=f"Image {image_id} deleted", id=image_id)
