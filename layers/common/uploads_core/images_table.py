"""Data access for the images table (DynamoDB through pynamodb).

Returns and takes the pydantic models of `uploads_core.models`; nothing above this module
sees pynamodb or DynamoDB.
"""

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from uploads_core.models import Image, ImageStatus, format_utc, utc_now
from uploads_core.settings import get_settings

# Reserved key of the id counter item, kept in the images table itself (ids start at 1).
_COUNTER_ID = 0


class _FromSettings:
    """Reads a Meta value from the settings when pynamodb first asks for it, not at import."""

    def __init__(self, read) -> None:
        self._read = read

    def __get__(self, instance, owner) -> str:
        return self._read(get_settings())


class _Meta:
    table_name = _FromSettings(lambda s: s.images_table)
    # None: botocore takes the region from the environment, as Lambda sets it.
    region = None


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

    dataset_index = DatasetIndex()
    dataset_status_index = DatasetStatusIndex()
    s3_key_index = S3KeyIndex()


class IdCounter(Model):
    Meta = _Meta

    id = NumberAttribute(hash_key=True)
    last_id = NumberAttribute(default=0)


def _dataset_status(dataset_id: int, status: str) -> str:
    return f"{dataset_id}#{status}"


def _to_image(record: ImageRecord) -> Image:
    return Image.model_validate(record.attribute_values)


def _to_record(image: Image) -> ImageRecord:
    data = image.model_dump(mode="json")
    return ImageRecord(dataset_status=_dataset_status(image.dataset_id, image.status), **data)


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


def get(image_id: int) -> Image | None:
    try:
        return _to_image(ImageRecord.get(image_id))
    except DoesNotExist:
        return None


def get_many(image_ids: Iterable[int]) -> list[Image]:
    """BatchGetItem, 100 keys per call; ids with no record are simply absent."""
    return [_to_image(r) for r in ImageRecord.batch_get(set(image_ids)) if r.id != _COUNTER_ID]


def find_by_key(s3_key: str) -> Image | None:
    for record in ImageRecord.s3_key_index.query(s3_key, limit=1):
        return _to_image(record)
    return None


def query_dataset(dataset_id: int, status: ImageStatus | None, after_id: int, limit: int) -> Iterator[Image]:
    """Images of a dataset with id > `after_id`, in id order, at most `limit` of them.

    Each DynamoDB page asks for no more than what is left to return, so the work is O(limit).
    """
    if status is None:
        index, hash_key = ImageRecord.dataset_index, dataset_id
    else:
        index, hash_key = ImageRecord.dataset_status_index, _dataset_status(dataset_id, status)
    results = index.query(
        hash_key,
        range_key_condition=ImageRecord.id > after_id,
        scan_index_forward=True,
        limit=limit,
        page_size=limit,
    )
    return (_to_image(r) for r in results)


def update(
    image: Image, changes: dict, expected_status: ImageStatus, now: datetime | None = None
) -> Image | None:
    """Applies `changes` if the record still has `expected_status`; None when it changed meanwhile."""
    record = _to_record(image)
    values = {**changes, "updated_at": format_utc(now or utc_now())}
    if "status" in changes:
        values["dataset_status"] = _dataset_status(image.dataset_id, changes["status"])
    actions = [getattr(ImageRecord, name).set(value) for name, value in values.items()]
    try:
        record.update(actions=actions, condition=ImageRecord.status == str(expected_status))
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return _to_image(record)


def delete(image: Image) -> bool:
    """Deletes the record; False when it was already gone."""
    try:
        ImageRecord(image.id).delete(condition=ImageRecord.id.exists())
    except DeleteError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True
