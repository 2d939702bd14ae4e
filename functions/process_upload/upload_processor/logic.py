"""Judging one uploaded object: find its record, read its bytes, record the verdict.

S3 delivers events at least once and in any order, and a second PUT to the same URL replaces
the object. So every verdict is a conditional write keyed on the event's sequencer (a stale or
repeated event changes nothing), objects are read with If-Match on the event's ETag (a replaced
object is left to its own, later event), and thumbnails are named after the version they show.
"""

import time

from upload_processor import inspection
from upload_processor.models import Outcome, UploadedObject
from uploads_core import images_bucket, images_table
from uploads_core.models import THUMBNAIL_PREFIX, ErrorReason, Image, ImageStatus
from uploads_core.settings import get_settings

_EXTENSIONS = {"image/webp": "webp", "image/jpeg": "jpg", "image/png": "png"}


def _find_record(key: str) -> Image | None:
    image = images_table.find_by_key(key)
    if image is None:
        # The s3-key index is eventually consistent: give a just-written record time to show up
        # before deleting its object as an orphan.
        time.sleep(get_settings().orphan_recheck_seconds)
        image = images_table.find_by_key(key)
    return image


def _thumbnail_key(image: Image, sequencer: str, mime_type: str) -> str:
    return f"{THUMBNAIL_PREFIX}{image.dataset_id}/{image.id}-{sequencer.upper()}.{_EXTENSIONS[mime_type]}"


def process_object(obj: UploadedObject) -> Outcome:
    if not obj.key.startswith("datasets/"):
        return Outcome(key=obj.key, result="ignored")
    image = _find_record(obj.key)
    if image is None:
        images_bucket.delete_file(obj.key)
        return Outcome(key=obj.key, result="orphan_deleted")
    outcome = Outcome(key=obj.key, result="stale", image_id=image.id)
    if image.object_sequencer and image.object_sequencer >= images_table.sequencer_key(obj.sequencer):
        return outcome

    opened = images_bucket.open_object(obj.key, etag=obj.etag)
    if opened is None:
        return outcome.model_copy(update={"result": "superseded"})
    try:
        facts = inspection.inspect(
            opened.body,
            size=opened.size,
            declared_mime=image.mime_type,
            declared_size=image.file_size,
            max_pixels=get_settings().max_image_pixels,
        )
    except inspection.Rejected as rejected:
        return _reject(image, obj, ErrorReason(code=rejected.code, message=rejected.message))
    finally:
        opened.body.close()

    thumbnail_key = _thumbnail_key(image, obj.sequencer, facts.thumbnail_mime)
    images_bucket.put_file(thumbnail_key, facts.thumbnail, facts.thumbnail_mime)
    changes = {
        "status": ImageStatus.UPLOADED,
        "width": facts.width,
        "height": facts.height,
        "orientation": facts.orientation,
        "thumbnail_key": thumbnail_key,
        "error_reason": None,
        "object_etag": obj.etag,
    }
    if images_table.record_verdict(image, changes, obj.sequencer) is None:
        images_bucket.delete_file(thumbnail_key)
        return outcome
    if image.thumbnail_key and image.thumbnail_key != thumbnail_key:
        images_bucket.delete_file(image.thumbnail_key)
    return outcome.model_copy(update={"result": "uploaded", "width": facts.width, "height": facts.height})


def _reject(image: Image, obj: UploadedObject, reason: ErrorReason) -> Outcome:
    changes = {
        "status": ImageStatus.ERROR,
        "error_reason": reason,
        "width": None,
        "height": None,
        "orientation": None,
        "thumbnail_key": None,
        "object_etag": obj.etag,
    }
    if images_table.record_verdict(image, changes, obj.sequencer) is None:
        return Outcome(key=obj.key, result="stale", image_id=image.id)
    # A rejected file is never served: its object and any older thumbnail go.
    images_bucket.delete_files([obj.key, image.thumbnail_key])
    return Outcome(key=obj.key, result="rejected", image_id=image.id, error_reason=reason)
