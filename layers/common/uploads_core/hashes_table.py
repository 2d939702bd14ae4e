"""Data access for the hashes table: which image holds which bytes in a dataset (DynamoDB through pynamodb).

One item per (dataset_id, sha256), keyed by both, so a lookup is a GetItem, never a scan. Its image is:
- `uploading`: prepared with this declared hash; its URL signs the checksum, so only these bytes can
  land under its key. Written with the image's record, in one transaction, only if nobody holds the
  hash (or the holder's claim expired and still names it): two prepares of the same bytes make one image.
- `uploaded`: written by the S3 trigger in the same transaction as the record's `uploaded` verdict,
  on the condition that no other image is `uploaded` with it. A dataset never holds two.
- `rejected`: the trigger rejected these very bytes (it read them whole and found this hash).

An image and the claim naming it go together: deleting the record (DELETE, cleanup) deletes its claim in
the same transaction, so a claim never names an image that is gone.
"""

from collections.abc import Iterable, Sequence
from typing import Literal

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, TransactWriteError, UpdateError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from uploads_core import dynamodb, images_table
from uploads_core.errors import ConflictError
from uploads_core.models import ErrorReason, HashClaim, HashState, Image, ImageStatus, format_utc

_Meta = dynamodb.meta(lambda s: s.hashes_table)
# Files per transaction: each is two writes (record and claim), and TransactWriteItems takes 100.
CHUNK = 50
_FAILED = "ConditionalCheckFailed"


class HashRecord(Model):
    Meta = _Meta

    dataset_id = NumberAttribute(hash_key=True)
    sha256 = UnicodeAttribute(range_key=True)
    image_id = NumberAttribute()
    state = UnicodeAttribute()
    # What a second prepare of the same bytes needs to sign a URL for the holder's key.
    s3_key = UnicodeAttribute()
    file_size = NumberAttribute()
    mime_type = UnicodeAttribute()
    upload_expires_at = UnicodeAttribute(null=True)
    error_reason = MapAttribute(null=True)


dynamodb.with_timeouts(_Meta)


class Contended(ConflictError):
    """Concurrent writes on the same hash kept cancelling ours; the request may be retried."""


def _to_claim(record: HashRecord) -> HashClaim:
    values = dict(record.attribute_values)
    if values.get("error_reason") is not None:
        values["error_reason"] = values["error_reason"].as_dict()
    return HashClaim.model_validate(values)


def _record(image: Image, state: HashState) -> HashRecord:
    expires = image.upload_expires_at if state == HashState.UPLOADING else None
    return HashRecord(
        image.dataset_id,
        image.sha256,
        image_id=image.id,
        state=str(state),
        s3_key=image.s3_key,
        file_size=image.file_size,
        mime_type=image.mime_type,
        upload_expires_at=format_utc(expires) if expires else None,
    )


def _reasons(exc: TransactWriteError) -> list[str | None]:
    """Why each action failed (None: it did not). pynamodb sends a transaction's condition checks
    first, then its deletes, puts and updates, each kind in the order added: the reasons follow."""
    if exc.cause_response_code != "TransactionCanceledException":
        raise exc
    return [r.code if r else None for r in exc.cancellation_reasons or []]


def get(dataset_id: int, sha256: str) -> HashClaim | None:
    try:
        return _to_claim(HashRecord.get(dataset_id, sha256, consistent_read=True))
    except HashRecord.DoesNotExist:
        return None


def get_many(dataset_id: int, hashes: Iterable[str]) -> dict[str, HashClaim]:
    """Consistent BatchGetItem, 100 keys per call; hashes nobody holds are absent."""
    keys = [(dataset_id, sha) for sha in set(hashes)]
    return {r.sha256: _to_claim(r) for r in HashRecord.batch_get(keys, consistent_read=True)}


def create_with_claims(images: Sequence[Image], holders: dict[str, int]) -> list[Image]:
    """Writes new `uploading` records, each with its claim on its `sha256`, CHUNK per transaction.

    A claim is written only if nobody holds the hash, or, for a hash in `holders`, if that image still
    holds it while uploading (its claim expired: taken over). Returns the images of the cancelled
    transactions (another prepare won a hash): none of their records or claims was written.
    """
    cancelled: list[Image] = []
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        try:
            with TransactWrite(connection=dynamodb.connection()) as transaction:
                for image in chunk:
                    images_table.put_new_in(transaction, image)
                    holder = holders.get(image.sha256)
                    if holder is None:
                        condition = HashRecord.sha256.does_not_exist()
                    else:
                        condition = (HashRecord.image_id == holder) & (
                            HashRecord.state == str(HashState.UPLOADING)
                        )
                    transaction.save(_record(image, HashState.UPLOADING), condition=condition)
        except TransactWriteError as exc:
            _reasons(exc)
            cancelled += chunk
    return cancelled


def record_upload(image: Image, changes: dict, sequencer: str) -> Literal["recorded", "lost", "duplicate"]:
    """The `uploaded` verdict (images_table.record_verdict's condition) and the claim of its hash
    (`changes["sha256"]`) in one transaction, on the condition that no other image of the dataset is
    `uploaded` with it: "lost" when the verdict's own condition failed, "duplicate" when another holds it."""
    uploaded = image.model_copy(update={"sha256": changes["sha256"]})
    try:
        with TransactWrite(connection=dynamodb.connection()) as transaction:
            images_table.record_verdict_in(transaction, image, changes, sequencer)
            condition = (
                HashRecord.sha256.does_not_exist()
                | (HashRecord.state != str(HashState.UPLOADED))
                | (HashRecord.image_id == image.id)
            )
            transaction.save(_record(uploaded, HashState.UPLOADED), condition=condition)
    except TransactWriteError as exc:
        claim, verdict = [*_reasons(exc), None, None][:2]  # the put, then the update
        if verdict == _FAILED:
            return "lost"
        if claim == _FAILED:
            return "duplicate"
        raise  # a conflicting transaction: the event is retried
    return "recorded"


def _holder_condition(image: Image):
    return (HashRecord.image_id == image.id) & (HashRecord.state == str(HashState.UPLOADING))


def mark_rejected(image: Image, reason: ErrorReason) -> bool:
    """The trigger rejected these very bytes: the image's `uploading` claim says so (rejected_before)."""
    record = HashRecord(image.dataset_id, image.sha256)
    actions = [
        HashRecord.state.set(str(HashState.REJECTED)),
        HashRecord.error_reason.set(reason.model_dump()),
    ]
    try:
        record.update(actions=actions, condition=_holder_condition(image))
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def release(image: Image) -> bool:
    """The image's `uploading` claim goes (a rejection of its declaration, not of the bytes)."""
    try:
        HashRecord(image.dataset_id, image.sha256).delete(condition=_holder_condition(image))
    except DeleteError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def delete_image(image: Image, status: ImageStatus | None = None, attempts: int = 4) -> bool:
    """Deletes the record (only if it still has `status`, when given) and, in the same transaction, the
    claim on its hash if it names this image: a claim never outlives its image. False when the record
    is gone (or has another status).

    The record is deleted on the condition that its hash is still the one of `image`: a verdict that
    added one meanwhile (and claimed it) is read again, and its claim goes too.
    """
    holds = image.sha256 is not None  # first guess: an image with a hash usually holds it
    for _ in range(attempts):
        if image.sha256 is None:
            if images_table.delete_unhashed(image, status):
                return True
            record = _FAILED
        else:
            record = _delete_with_claim(image, status, holds)
        if record == _FAILED:
            current = images_table.get(image.id, consistent=True)
            if current is None or current.sha256 == image.sha256:
                return False  # gone, or its status is not `status` any more
            if status is not None and current.status != status:
                return False
            image, holds = current, current.sha256 is not None
        elif record is None:
            return True
        else:
            holds = not holds  # the claim changed hands meanwhile: the other transaction
    raise Contended(f"Image {image.id}: its hash kept changing hands while it was being deleted; retry")


def _delete_with_claim(image: Image, status: ImageStatus | None, holds: bool) -> str | None:
    """One transaction of `delete_image`: None when done, _FAILED when the record's condition failed,
    "claim" when the claim's did."""
    try:
        with TransactWrite(connection=dynamodb.connection()) as transaction:
            images_table.delete_in(transaction, image, status)
            key = (image.dataset_id, image.sha256)
            if holds:
                transaction.delete(HashRecord(*key), condition=HashRecord.image_id == image.id)
            else:
                condition = HashRecord.sha256.does_not_exist() | (HashRecord.image_id != image.id)
                transaction.condition_check(HashRecord, *key, condition=condition)
    except TransactWriteError as exc:
        reasons = [*_reasons(exc), None, None][:2]
        # Two deletes, the record's first; or the claim's condition check, then the record's delete.
        record, claim = reasons if holds else reversed(reasons)
        if record == _FAILED:
            return _FAILED
        if claim == _FAILED:
            return "claim"
        raise
    return None
