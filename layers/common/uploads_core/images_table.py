"""Data access for the images table (DynamoDB through pynamodb).

Returns and takes the pydantic models of `uploads_core.models`; nothing above this module
sees pynamodb or DynamoDB.
"""

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from pynamodb.attributes import BooleanAttribute, MapAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from uploads_core import dynamodb, lifecycle
from uploads_core.models import ErrorReason, Image, ImageStatus, format_utc, utc_now
from uploads_core.settings import get_settings

# Reserved key of the id counter item, kept in the images table itself (ids start at 1).
_COUNTER_ID = 0
# Shards of the sparse uploading index. Fixed: records already written live in these shards.
UPLOADING_SHARDS = 8


_Meta = dynamodb.meta(lambda s: s.images_table)


class DatasetIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "dataset-index"
        projection = AllProjection()

    dataset_id = NumberAttribute(hash_key=True)
    id = NumberAttribute(range_key=True)


class DatasetStatusIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "dataset-status-index"
        projection = AllProjection()

    dataset_status = UnicodeAttribute(hash_key=True)
    id = NumberAttribute(range_key=True)


class S3KeyIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "s3-key-index"
        projection = AllProjection()

    s3_key = UnicodeAttribute(hash_key=True)


class UploadingIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "uploading-index"
        projection = AllProjection()

    uploading_shard = NumberAttribute(hash_key=True)
    upload_expires_at = UnicodeAttribute(range_key=True)


class ImageRecord(Model):
    Meta = _Meta

    id = NumberAttribute(hash_key=True)
    dataset_id = NumberAttribute()
    # "<dataset_id>#<status>": lets a status-filtered listing be a Query, not a filter.
    dataset_status = UnicodeAttribute()
    filename = UnicodeAttribute()
    s3_key = UnicodeAttribute()
    file_size = NumberAttribute()
    mime_type = UnicodeAttribute()
    width = NumberAttribute(null=True)
    height = NumberAttribute(null=True)
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    orientation = NumberAttribute(null=True)
    error_reason = MapAttribute(null=True)
    thumbnail_key = UnicodeAttribute(null=True)
    # The S3 event sequencer of the object version last judged, right-padded to a fixed
    # width so that DynamoDB's string comparison orders events of one key.
    object_sequencer = UnicodeAttribute(null=True)
    object_etag = UnicodeAttribute(null=True)
    object_version = UnicodeAttribute(null=True)
    upload_expires_at = UnicodeAttribute(null=True)
    # Only while `uploading`: the hash key that puts the record in the sparse uploading index.
    uploading_shard = NumberAttribute(null=True)
    # Set by the S3 trigger's verdict (issue 14): display size, ThumbHash placeholder, GPS present.
    display_width = NumberAttribute(null=True)
    display_height = NumberAttribute(null=True)
    placeholder = UnicodeAttribute(null=True)
    has_location = BooleanAttribute(null=True)

    sha256 = UnicodeAttribute(null=True)

    dataset_index = DatasetIndex()
    dataset_status_index = DatasetStatusIndex()
    s3_key_index = S3KeyIndex()
    uploading_index = UploadingIndex()


class IdCounter(Model):
    Meta = _Meta

    id = NumberAttribute(hash_key=True)
    last_id = NumberAttribute(default=0)


dynamodb.with_timeouts(_Meta)


def _dataset_status(dataset_id: int, status: str) -> str:
    return f"{dataset_id}#{status}"


_BOOKKEEPING = ("thumbnail_key", "object_sequencer", "object_etag", "object_version")


def _to_image(record: ImageRecord) -> Image:
    values = dict(record.attribute_values)
    if values.get("error_reason") is not None:
        values["error_reason"] = values["error_reason"].as_dict()
    return Image.model_validate(values)


def _index_values(image: Image, status: str) -> dict:
    """The derived keys that put a record in the status listing and the uploading index."""
    uploading = status == ImageStatus.UPLOADING
    return {
        "dataset_status": _dataset_status(image.dataset_id, status),
        "uploading_shard": image.id % UPLOADING_SHARDS if uploading else None,
    }


def _to_record(image: Image) -> ImageRecord:
    data = image.model_dump(mode="json")
    data.update({name: getattr(image, name) for name in _BOOKKEEPING})
    data.update(_index_values(image, image.status))
    return ImageRecord(**{k: v for k, v in data.items() if v is not None})


def _actions(image: Image, changes: dict, now: datetime | None) -> list:
    values = {**changes, "updated_at": format_utc(now or utc_now())}
    if "status" in changes:
        values.update(_index_values(image, changes["status"]))
    if isinstance(values.get("error_reason"), ErrorReason):
        values["error_reason"] = values["error_reason"].model_dump()
    return [
        getattr(ImageRecord, name).remove() if value is None else getattr(ImageRecord, name).set(value)
        for name, value in values.items()
    ]


def sequencer_key(sequencer: str) -> str:
    """S3 sequencers of one key compare as hex strings once right-padded to the same length."""
    return sequencer.upper().ljust(32, "0")


def reserve_ids(count: int) -> range:
    """Reserves `count` consecutive ids with one atomic ADD on the counter."""
    counter = IdCounter(_COUNTER_ID)
    counter.update(actions=[IdCounter.last_id.add(count)])
    last = int(counter.last_id)
    return range(last - count + 1, last + 1)


def put_new(images: Sequence[Image]) -> None:
    """Writes new records with BatchWriteItem, 25 per call (pynamodb retries unprocessed items)."""
    with ImageRecord.batch_write() as batch:
        for image in images:
            batch.save(_to_record(image))


def delete_many(image_ids: Iterable[int]) -> None:
    with ImageRecord.batch_write() as batch:
        for image_id in image_ids:
            batch.delete(ImageRecord(image_id))


def get(image_id: int, consistent: bool = False) -> Image | None:
    try:
        return _to_image(ImageRecord.get(image_id, consistent_read=consistent))
    except DoesNotExist:
        return None


def get_many(image_ids: Iterable[int], consistent: bool = False) -> list[Image]:
    """BatchGetItem, 100 keys per call; ids with no record are simply absent."""
    records = ImageRecord.batch_get(set(image_ids), consistent_read=consistent)
    return [_to_image(r) for r in records if r.id != _COUNTER_ID]


def find_by_key(s3_key: str) -> Image | None:
    for record in ImageRecord.s3_key_index.query(s3_key, limit=1):
        return _to_image(record)
    return None


def query_dataset(
    dataset_id: int, status: ImageStatus | None, after_id: int, limit: int, has_location: bool | None = None
) -> Iterator[Image]:
    """Images of a dataset with id > `after_id`, in id order, at most `limit` of them.

    Each DynamoDB page asks for no more than what is left to return, so the work is O(limit) without
    `has_location`. With it, a filter expression: DynamoDB applies it after reading a page, so pages
    may come back short or empty and the query goes on (pynamodb follows LastEvaluatedKey) until
    `limit` images matched or the dataset ends; the work is then O(images read up to the last match).
    `has_location=False` also matches records without the attribute (not uploaded, or older).
    """
    if status is None:
        index, hash_key = ImageRecord.dataset_index, dataset_id
    else:
        index, hash_key = ImageRecord.dataset_status_index, _dataset_status(dataset_id, status)
    if has_location is None:
        condition = None
    elif has_location:
        condition = ImageRecord.has_location == True  # noqa: E712 - a pynamodb condition, not a comparison
    else:
        condition = ImageRecord.has_location.does_not_exist() | (ImageRecord.has_location == False)  # noqa: E712
    results = index.query(
        hash_key,
        range_key_condition=ImageRecord.id > after_id,
        filter_condition=condition,
        scan_index_forward=True,
        limit=limit,
        page_size=limit,
    )
    return (_to_image(r) for r in results)


def _conditional_update(image: Image, changes: dict, condition, now: datetime | None) -> Image | None:
    record = _to_record(image)
    try:
        record.update(actions=_actions(image, changes, now), condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return _to_image(record)


def update(image: Image, changes: dict, now: datetime | None = None) -> Image | None:
    """PATCH: applies `changes` only if the record still has the status it was read with (the caller
    checked the transition against that status); None when a verdict or a PATCH changed it meanwhile."""
    return _conditional_update(image, changes, ImageRecord.status == str(image.status), now)


def mark_missing(images: Sequence[Image], reason: ErrorReason, now: datetime | None = None) -> list[Image]:
    """confirm-upload found no object: `error`, each only if still `uploading` (the S3 trigger may have
    judged a version meanwhile). Returns the images marked; the others were left as they were.

    One conditional UpdateItem per record, run concurrently (settings.head_concurrency at once).
    Not batched: PartiQL's BatchExecuteStatement cannot SET and REMOVE (the uploading index key) in
    one statement under moto, which also treats its WHERE as a filter and never reports a failed
    condition; TransactWriteItems is all or nothing, blocks the trigger's writes while it runs, and
    moto deep-copies the whole table for each of its items (5 s per call of 100 on 1,000 records).
    """
    changes = {"status": ImageStatus.ERROR, "error_reason": reason}
    condition = ImageRecord.status == str(ImageStatus.UPLOADING)
    now = now or utc_now()
    if not images:
        return []

    def mark(image: Image) -> Image | None:
        return _conditional_update(image, changes, condition, now)

    with ThreadPoolExecutor(max_workers=min(len(images), get_settings().head_concurrency)) as pool:
        return [image for image in pool.map(mark, images) if image is not None]


def record_verdict(image: Image, changes: dict, sequencer: str, now: datetime | None = None) -> Image | None:
    """The S3 trigger's judgement of one object version. None when the record is gone, when its
    status does not allow the verdict (an `uploaded` image is final), or when a later version
    (greater sequencer) was judged already."""
    changes, condition = _verdict(changes, sequencer)
    return _conditional_update(image, changes, condition, now)


def _verdict(changes: dict, sequencer: str) -> tuple[dict, object]:
    seq = sequencer_key(sequencer)
    condition = ImageRecord.status.is_in(*(str(s) for s in lifecycle.sources(changes["status"])))
    condition &= ImageRecord.object_sequencer.does_not_exist() | (ImageRecord.object_sequencer < seq)
    return {**changes, "object_sequencer": seq}, condition


# Writes of this table inside a transaction of hashes_table (one image and its hash claim).


def record_verdict_in(transaction, image: Image, changes: dict, sequencer: str) -> None:
    """`record_verdict` as one action of a transaction, same condition."""
    changes, condition = _verdict(changes, sequencer)
    transaction.update(_to_record(image), _actions(image, changes, None), condition=condition)


def put_new_in(transaction, image: Image) -> None:
    transaction.save(_to_record(image), condition=ImageRecord.id.does_not_exist())


def _delete_condition(image: Image, status: ImageStatus | None):
    """The record still has `status` (when given) and the hash it was read with (a verdict may have
    added one: then its claim goes too)."""
    condition = ImageRecord.id.exists() if status is None else ImageRecord.status == str(status)
    if image.sha256 is None:
        return condition & ImageRecord.sha256.does_not_exist()
    return condition & (ImageRecord.sha256 == image.sha256)


def delete_in(transaction, image: Image, status: ImageStatus | None = None) -> None:
    """`delete` (or `delete_if_status`) as one action of a transaction, on `_delete_condition`."""
    transaction.delete(ImageRecord(image.id), condition=_delete_condition(image, status))


def delete_unhashed(image: Image, status: ImageStatus | None = None) -> bool:
    """`delete_in` for a record read without a hash, alone: it has no claim to delete with it, and one
    conditional DeleteItem is what a transaction of one action would be. False when the condition failed."""
    assert image.sha256 is None
    try:
        ImageRecord(image.id).delete(condition=_delete_condition(image, status))
    except DeleteError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def query_stale_uploads(expired_before: datetime) -> Iterator[Image]:
    """Every `uploading` record whose upload URL expired before the cutoff, through the sparse
    index, all pages."""
    cutoff = format_utc(expired_before)
    for shard in range(UPLOADING_SHARDS):
        for record in ImageRecord.uploading_index.query(
            shard, range_key_condition=ImageRecord.upload_expires_at < cutoff
        ):
            yield _to_image(record)


def delete_if_status(image: Image, status: ImageStatus) -> bool:
    """Deletes the record only if it still has `status`; False otherwise (or when gone)."""
    try:
        ImageRecord(image.id).delete(condition=ImageRecord.status == str(status))
    except DeleteError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def delete(image: Image) -> bool:
    """Deletes the record; False when it was already gone."""
    try:
        ImageRecord(image.id).delete(condition=ImageRecord.id.exists())
    except DeleteError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True
