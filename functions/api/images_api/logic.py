"""What the API does, in terms of pydantic models; storage details stay in uploads_core."""

import time
from datetime import timedelta
from itertools import islice

from images_api import cursor as cursors
from images_api.access import Caller, require
from uploads_core import hashes_table, images_bucket, images_table, lifecycle
from uploads_core.errors import ConflictError, DatasetNotFoundError, ImageNotFoundError
from uploads_core.keys import image_key, images_prefix, thumbnail_prefix
from uploads_core.models import (
    ConfirmUploadResponse,
    DeleteResult,
    DownloadUrl,
    ErrorReason,
    HashClaim,
    HashLookupResponse,
    HashMatch,
    HashState,
    Image,
    ImagePage,
    ImagePatch,
    ImageStatus,
    ImageWithUrl,
    PrepareUploadRequest,
    PrepareUploadResponse,
    Role,
    UploadTicket,
    utc_now,
)
from uploads_core.settings import get_settings

# confirm-upload re-reads the records it waits for this often (one BatchGetItem per 100 of them).
_VERDICT_POLL_SECONDS = 0.2
_MISSING = ErrorReason(
    code="missing",
    message="no object was uploaded for this image when it was confirmed; PUT it, then confirm again",
)


def prepare_upload(
    caller: Caller, dataset_id: int, request: PrepareUploadRequest, expires_in: int
) -> PrepareUploadResponse:
    """One counter update reserves the ids, batch writes store the records, then URLs are signed.

    Files with a `sha256`: one consistent BatchGetItem per 100 hashes finds who holds them in the
    dataset first. Bytes already `uploaded` (or rejected) get no record and no URL; bytes being uploaded
    share that image and its key (the URL signs the checksum, so only those bytes can land there); the
    others get records written with their claims, 50 files per transaction, each claim on the
    condition that nobody took the hash meanwhile. A lost race reads those hashes again.
    """
    require(caller, dataset_id, Role.EDITOR)
    files = request.files
    now = utc_now()
    tickets: list[UploadTicket | None] = [None] * len(files)
    first: dict[str, int] = {}  # sha256 -> its first file in this batch
    for index, spec in enumerate(files):
        if spec.sha256 is not None:
            first.setdefault(spec.sha256, index)
    unique = [i for i, spec in enumerate(files) if spec.sha256 is None or first[spec.sha256] == i]
    claims = hashes_table.get_many(dataset_id, first) if first else {}
    images: dict[int, Image] = {}  # file index -> its new record, built once (a retry keeps its id)
    todo = unique
    for _ in range(_CLAIM_ATTEMPTS):
        holders: dict[str, int] = {}
        needed = []
        for index in todo:
            sha = files[index].sha256
            claim = claims.get(sha) if sha else None
            ticket = _from_claim(claim, now, expires_in) if claim else None
            if ticket is not None:
                tickets[index] = ticket
            else:
                needed.append(index)
                if claim is not None:
                    holders[sha] = claim.image_id  # expired: taken over if it still holds it
        fresh = [i for i in needed if i not in images]
        for index, image_id in zip(fresh, images_table.reserve_ids(len(fresh)) if fresh else (), strict=True):
            images[index] = _new_image(image_id, dataset_id, files[index], now, expires_in)
        plain = [images[i] for i in needed if images[i].sha256 is None]
        if plain:
            images_table.put_new(plain)
        hashed = [images[i] for i in needed if images[i].sha256 is not None]
        lost = {image.id for image in hashes_table.create_with_claims(hashed, holders)} if hashed else set()
        todo = [i for i in needed if images[i].id in lost]
        for index in needed:
            if images[index].id not in lost:
                tickets[index] = _ticket(images[index], expires_in)
        if not todo:
            break
        retry = {files[i].sha256 for i in todo}
        claims = {sha: c for sha, c in claims.items() if sha not in retry}
        claims.update(hashes_table.get_many(dataset_id, retry))
    else:
        raise hashes_table.Contended("Other uploads of the same files kept winning the race; retry")
    for index, spec in enumerate(files):
        if tickets[index] is None:  # a second copy of a file of this batch
            tickets[index] = _copy_of(tickets[first[spec.sha256]])
    return PrepareUploadResponse(uploads=tickets)


# A prepare of bytes another image is being uploaded with shares its key and URL while that URL has at
# least this long to live; after, the claim is taken over by a new image (the old URL is nearly dead).
_MIN_SHARED_SECONDS = 60
_CLAIM_ATTEMPTS = 3


def _new_image(image_id: int, dataset_id: int, spec, now, expires_in: int) -> Image:
    return Image(
        id=image_id,
        dataset_id=dataset_id,
        filename=spec.filename,
        s3_key=image_key(dataset_id, spec.filename),
        file_size=spec.file_size,
        mime_type=spec.mime_type,
        status=ImageStatus.UPLOADING,
        created_at=now,
        updated_at=now,
        upload_expires_at=now + timedelta(seconds=expires_in),
        sha256=spec.sha256,
    )


def _ticket(image: Image, expires_in: int) -> UploadTicket:
    return UploadTicket(
        image_id=image.id,
        upload_url=images_bucket.generate_presigned_upload_url(
            image.s3_key, image.mime_type, image.file_size, expires_in, image.sha256
        ),
        s3_key=image.s3_key,
        expires_in=expires_in,
        upload_headers=images_bucket.upload_headers(image.mime_type, image.sha256),
    )


def _from_claim(claim: HashClaim, now, expires_in: int) -> UploadTicket | None:
    """The answer for bytes an image of the dataset already holds; None: a new image must take them."""
    if claim.state in (HashState.UPLOADED, HashState.REJECTED):
        uploaded = claim.state == HashState.UPLOADED
        return UploadTicket(
            image_id=claim.image_id,
            upload_url=None,
            s3_key=claim.s3_key,
            expires_in=None,
            duplicate_of=claim.image_id if uploaded else None,
            rejected_before=None if uploaded else claim.error_reason,
        )
    left = int((claim.upload_expires_at - now).total_seconds()) if claim.upload_expires_at else 0
    if left < _MIN_SHARED_SECONDS:
        return None
    holder = Image(
        id=claim.image_id,
        dataset_id=claim.dataset_id,
        filename="-",
        s3_key=claim.s3_key,
        file_size=claim.file_size,
        mime_type=claim.mime_type,
        status=ImageStatus.UPLOADING,
        created_at=now,
        updated_at=now,
        sha256=claim.sha256,
    )
    return _ticket(holder, min(expires_in, left))


def _copy_of(ticket: UploadTicket) -> UploadTicket:
    """A second identical file of one batch: the first one's image, no URL."""
    if ticket.rejected_before is not None:
        return ticket.model_copy()
    image_id = ticket.duplicate_of or ticket.image_id
    return UploadTicket(
        image_id=image_id, upload_url=None, s3_key=ticket.s3_key, expires_in=None, duplicate_of=image_id
    )


def lookup_hashes(caller: Caller, dataset_id: int, hashes: list[str]) -> HashLookupResponse:
    """Which hashes an image of the dataset holds, with that image's status as its record says now."""
    require(caller, dataset_id, Role.VIEWER)
    claims = hashes_table.get_many(dataset_id, hashes)
    holders = {i.id: i for i in images_table.get_many(c.image_id for c in claims.values())}
    found, missing = [], []
    for sha in dict.fromkeys(hashes):
        claim = claims.get(sha)
        image = holders.get(claim.image_id) if claim else None
        if image is None or image.dataset_id != dataset_id:
            missing.append(sha)
        else:
            found.append(
                HashMatch(sha256=sha, image_id=image.id, status=image.status, error_reason=image.error_reason)
            )
    return HashLookupResponse(found=found, missing=missing)


def confirm_upload(caller: Caller, dataset_id: int, image_ids: list[int]) -> ConfirmUploadResponse:
    """Counts the requested images of this dataset that are `uploaded`, i.e. verified by the S3 trigger.

    confirm never makes an image `uploaded` itself (only the verification of its bytes does): an
    `uploading` image with no object becomes `error` (missing); for an object present but not yet
    judged, it waits (bounded) for the trigger's verdict. Those still unjudged when it stops waiting
    stay `uploading` and are counted in `pending_count`. Ids of other datasets, or with no record,
    are neither touched nor counted.
    """
    require(caller, dataset_id, Role.EDITOR)
    images = {i.id: i for i in images_table.get_many(image_ids) if i.dataset_id == dataset_id}
    unverified = [i for i in images.values() if i.status != ImageStatus.UPLOADED]
    found = images_bucket.current_objects(images_prefix(dataset_id), (i.s3_key for i in unverified))
    waiting: dict[int, str | None] = {}  # image id -> the version present, not judged yet
    missing = []
    for image in unverified:
        info = found[image.s3_key]
        if info is not None and info.version_id != image.object_version:
            waiting[image.id] = info.version_id
        elif info is None and image.status == ImageStatus.UPLOADING:
            missing.append(image)
    # Conditional: a verdict written since the HEAD wins over "missing"; then count that one.
    marked = {i.id: i for i in images_table.mark_missing(missing, _MISSING)}
    images.update(marked)
    refused = [i.id for i in missing if i.id not in marked]
    if refused:
        images.update({i.id: i for i in images_table.get_many(refused, consistent=True)})
    deadline = time.monotonic() + get_settings().confirm_wait_seconds
    while waiting and time.monotonic() < deadline:
        time.sleep(min(_VERDICT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        current = {i.id: i for i in images_table.get_many(waiting, consistent=True)}
        for image_id, version in list(waiting.items()):
            image = current.get(image_id)
            if image is None:  # deleted meanwhile
                images.pop(image_id, None)
            else:
                images[image_id] = image
            if image is None or image.status == ImageStatus.UPLOADED or image.object_version == version:
                del waiting[image_id]
    confirmed = sum(i.status == ImageStatus.UPLOADED for i in images.values())
    return ConfirmUploadResponse(
        message=f"Successfully confirmed {confirmed} uploads",
        updated_count=confirmed,
        total_requested=len(image_ids),
        pending_count=len(waiting),
    )


def list_images(
    caller: Caller,
    dataset_id: int,
    status: ImageStatus | None,
    skip: int,
    limit: int,
    cursor: str | None,
    has_location: bool | None = None,
) -> ImagePage:
    """A page in id order; one extra item tells whether a next page exists."""
    require(caller, dataset_id, Role.VIEWER)
    after_id = cursors.decode(cursor, dataset_id, status, has_location) if cursor else 0
    matches = images_table.query_dataset(dataset_id, status, after_id, skip + limit + 1, has_location)
    items = list(islice(matches, skip, None))
    page, more = items[:limit], len(items) > limit
    next_cursor = cursors.encode(dataset_id, status, page[-1].id, has_location) if more else None
    return ImagePage(items=page, next_cursor=next_cursor)


def _with_urls(image: Image, expires_in: int) -> ImageWithUrl:
    item = ImageWithUrl.model_validate(image, from_attributes=True)
    if image.status == ImageStatus.UPLOADED:
        item.download_url = images_bucket.generate_presigned_download_url(
            image.s3_key, expires_in, image.object_version
        )
        item.url_expires_in = expires_in
        if image.thumbnail_key:
            item.thumbnail_url = images_bucket.generate_presigned_download_url(
                image.thumbnail_key, expires_in
            )
    return item


def with_download_urls(images: list[Image], expires_in: int) -> list[ImageWithUrl]:
    """Signs URLs locally for uploaded images only: no extra request per image."""
    return [_with_urls(image, expires_in) for image in images]


def get_image(caller: Caller, image_id: int, role: Role = Role.VIEWER) -> Image:
    """The image, if the caller has `role` in its dataset; to a non-member, as if it did not exist."""
    image = images_table.get(image_id)
    if image is None:
        raise ImageNotFoundError(image_id)
    try:
        require(caller, image.dataset_id, role)
    except DatasetNotFoundError:
        raise ImageNotFoundError(image_id) from None
    return image


def download_url(caller: Caller, image_id: int, expires_in: int) -> DownloadUrl:
    image = get_image(caller, image_id)
    if image.status != ImageStatus.UPLOADED:
        raise ConflictError(f"Image {image_id} is '{image.status}', not 'uploaded': nothing to download yet")
    return DownloadUrl(
        download_url=images_bucket.generate_presigned_download_url(
            image.s3_key, expires_in, image.object_version
        ),
        expires_in=expires_in,
    )


_REPORTED_FAILED = ErrorReason(code="reported_failed", message="a client marked this upload as failed")


def patch_image(caller: Caller, image_id: int, patch: ImagePatch) -> Image:
    """Width and height as given; a status change only where the state machine allows it (409 else)."""
    image = get_image(caller, image_id, Role.EDITOR)
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("status") == image.status:
        del changes["status"]  # no change, nothing to check
    if "status" in changes:
        try:
            lifecycle.check(image.status, changes["status"])
        except lifecycle.TransitionRefused as refused:
            raise ConflictError(f"Image {image_id} cannot become '{changes['status']}': {refused}") from None
        changes["error_reason"] = _REPORTED_FAILED  # the only change left: uploading -> error
    if not changes:
        return image
    updated = images_table.update(image, changes)
    if updated is None:
        raise ConflictError(f"Image {image_id} changed while it was being updated; retry")
    return updated


def delete_image(caller: Caller, image_id: int) -> DeleteResult:
    """Every version of the object and every thumbnail, the record, then a second sweep.

    Objects first: a failure part-way leaves the record, so the DELETE can be retried. The sweep after
    the record is gone removes what an S3 trigger running meanwhile wrote (its verdict fails once the
    record is gone, and it then removes its own writes too).
    """
    image = get_image(caller, image_id, Role.EDITOR)
    prefixes = [thumbnail_prefix(image.dataset_id, image.id)]
    images_bucket.delete_everything(keys=[image.s3_key], prefixes=prefixes)
    if not hashes_table.delete_image(image):
        raise ImageNotFoundError(image_id)
    images_bucket.delete_everything(keys=[image.s3_key], prefixes=prefixes)
    return DeleteResult(message=f"Image {image_id} deleted", id=image_id)
