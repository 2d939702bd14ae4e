"""Judging one uploaded object version: find its record, read exactly that version, record the verdict.

S3 delivers events at least once and in any order, and a PUT through a still-valid URL adds a version
to the (versioned) bucket. So:
- every verdict is a conditional write (the state machine's rule and the event's sequencer): a stale,
  repeated or concurrent event changes nothing it should not;
- the bytes read are those of the event's version, never whatever the key holds by then;
- everything deleted is a version this invocation judged, removed for good: a rejected version, an
  orphan (no record), any version PUT after the image was verified (`uploaded` is final, so the
  verified version becomes current again), and its own thumbnail when its verdict lost.
"""

import time

from upload_processor import inspection
from upload_processor.models import Outcome, UploadedObject
from uploads_core import images_bucket, images_table, keys, lifecycle
from uploads_core.models import ErrorReason, Image, ImageStatus
from uploads_core.settings import get_settings

_EXTENSIONS = {"image/webp": "webp", "image/jpeg": "jpg", "image/png": "png"}


def _find_record(key: str) -> Image | None:
    image = images_table.find_by_key(key)
    if image is None:
        # The s3-key index is eventually consistent: give a just-written record time to show up
        # before deleting its object as an orphan.
        time.sleep(get_settings().orphan_recheck_seconds)
        image = images_table.find_by_key(key)
    # The index may lag the table, never lead it: a decision taken on a lagging copy (orphan, judged
    # already, final, older) holds for the record as it is now too.
    return image


def process_object(obj: UploadedObject) -> Outcome:
    if not obj.key.startswith("datasets/"):
        return Outcome(key=obj.key, result="ignored")
    image = _find_record(obj.key)
    if image is None:
        images_bucket.delete_version(obj.key, obj.version_id)
        return Outcome(key=obj.key, result="orphan_deleted")
    if image.object_version == obj.version_id:  # judged already: a repeated event
        if image.status == ImageStatus.ERROR:
            images_bucket.delete_version(obj.key, obj.version_id)  # finishes a rejection cut short
        return Outcome(key=obj.key, result="stale", image_id=image.id)
    try:
        lifecycle.check(image.status, ImageStatus.UPLOADED, inspected=True)
    except lifecycle.TransitionRefused:
        return _discard(image, obj, "discarded")  # a PUT after the image was verified
    if image.object_sequencer and image.object_sequencer >= images_table.sequencer_key(obj.sequencer):
        return _discard(image, obj, "stale")  # older than a version already judged

    opened = images_bucket.open_version(obj.key, obj.version_id)
    if opened is None:
        return Outcome(key=obj.key, result="superseded", image_id=image.id)  # that version is gone
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

    thumbnail_key = keys.thumbnail_key(image.dataset_id, image.id, _EXTENSIONS[facts.thumbnail_mime])
    thumbnail_version = images_bucket.put_file(thumbnail_key, facts.thumbnail, facts.thumbnail_mime)
    changes = {
        "status": ImageStatus.UPLOADED,
        "width": facts.width,
        "height": facts.height,
        "orientation": facts.orientation,
        "display_width": facts.display_width,
        "display_height": facts.display_height,
        "placeholder": facts.placeholder,
        "has_location": facts.has_location,
        "thumbnail_key": thumbnail_key,
        "error_reason": None,
        "object_etag": obj.etag,
        "object_version": obj.version_id,
    }
    if images_table.record_verdict(image, changes, obj.sequencer) is None:
        images_bucket.delete_version(thumbnail_key, thumbnail_version)
        return _lost(image, obj)
    # `uploaded` is final, so any other thumbnail of this image is litter (an invocation that died
    # between its thumbnail and its verdict, or one whose verdict is about to lose).
    images_bucket.delete_everything(
        prefixes=[keys.thumbnail_prefix(image.dataset_id, image.id)], keep=[thumbnail_key]
    )
    return Outcome(key=obj.key, result="uploaded", image_id=image.id, width=facts.width, height=facts.height)


def _reject(image: Image, obj: UploadedObject, reason: ErrorReason) -> Outcome:
    changes = {
        "status": ImageStatus.ERROR,
        "error_reason": reason,
        "width": None,
        "height": None,
        "orientation": None,
        "display_width": None,
        "display_height": None,
        "placeholder": None,
        "has_location": None,
        "thumbnail_key": None,
        "object_etag": obj.etag,
        "object_version": obj.version_id,
    }
    if images_table.record_verdict(image, changes, obj.sequencer) is None:
        return _lost(image, obj)
    # A rejected version is never served, nor kept.
    images_bucket.delete_version(obj.key, obj.version_id)
    return Outcome(key=obj.key, result="rejected", image_id=image.id, error_reason=reason)


def _lost(image: Image, obj: UploadedObject) -> Outcome:
    """Another verdict (or a deletion) came first: the version goes unless that verdict kept it."""
    current = images_table.get(image.id, consistent=True)
    if current is not None and current.object_version == obj.version_id:
        return Outcome(key=obj.key, result="stale", image_id=image.id)  # a repeated event won with it
    return _discard(image, obj, "discarded")


def _discard(image: Image, obj: UploadedObject, result: str) -> Outcome:
    images_bucket.delete_version(obj.key, obj.version_id)
    return Outcome(key=obj.key, result=result, image_id=image.id)
