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

import hashlib
import time

from upload_processor import inspection
from upload_processor.models import Outcome, UploadedObject
from uploads_core import hashes_table, images_bucket, images_table, keys, lifecycle
from uploads_core.models import ErrorReason, Image, ImageStatus
from uploads_core.settings import get_settings

_EXTENSIONS = {"image/webp": "webp", "image/jpeg": "jpg", "image/png": "png"}
# Rejections of the bytes themselves, whatever was declared: a claim on their hash says so
# (rejected_before). The others (type, size, checksum) judge the declaration: the claim is released.
_BYTES_REJECTED = frozenset({"not_an_image", "too_many_pixels", "too_complex", "corrupt"})
_DRAIN_CHUNK = 1024 * 1024


class HashingReader:
    """Hashes every byte read through it (the inspection reads a good image whole); `hexdigest` reads
    what is left, up to `size` bytes in all, without keeping it."""

    def __init__(self, source: inspection.Readable, size: int) -> None:
        self._source, self._left, self._hash = source, size, hashlib.sha256()

    def read(self, size: int, /) -> bytes:
        data = self._source.read(min(size, self._left))
        self._left -= len(data)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str | None:
        """The SHA-256 of all `size` bytes; None if the object ended sooner."""
        while self._left > 0:
            if not self.read(_DRAIN_CHUNK):
                return None
        return self._hash.hexdigest()


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
    reader = HashingReader(opened.body, opened.size)
    try:
        try:
            facts = inspection.inspect(
                reader,
                size=opened.size,
                declared_mime=image.mime_type,
                declared_size=image.file_size,
                max_pixels=get_settings().max_image_pixels,
            )
        except inspection.Rejected as rejected:
            # A declared hash is only called rejected for bytes read whole (<= the declared size).
            sha256 = reader.hexdigest() if image.sha256 and opened.size == image.file_size else None
            return _reject(image, obj, ErrorReason(code=rejected.code, message=rejected.message), sha256)
        sha256 = reader.hexdigest()
    finally:
        opened.body.close()
    if sha256 is None or (image.sha256 is not None and sha256 != image.sha256):
        # S3 checks a signed x-amz-checksum-sha256; this holds even where it was not (or not signed).
        reason = ErrorReason(code="checksum_mismatch", message="the bytes' SHA-256 is not the one declared")
        return _reject(image, obj, reason, sha256)

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
        "sha256": sha256,
    }
    verdict = hashes_table.record_upload(image, changes, obj.sequencer)
    if verdict != "recorded":
        images_bucket.delete_version(thumbnail_key, thumbnail_version)
    if verdict == "lost":
        return _lost(image, obj)
    if verdict == "duplicate":
        holder = hashes_table.get(image.dataset_id, sha256)
        where = f"image {holder.image_id}" if holder else "another image"
        reason = ErrorReason(code="duplicate", message=f"these bytes are already {where} of this dataset")
        return _reject(image, obj, reason, sha256)
    # `uploaded` is final, so any other thumbnail of this image is litter (an invocation that died
    # between its thumbnail and its verdict, or one whose verdict is about to lose).
    images_bucket.delete_everything(
        prefixes=[keys.thumbnail_prefix(image.dataset_id, image.id)], keep=[thumbnail_key]
    )
    return Outcome(key=obj.key, result="uploaded", image_id=image.id, width=facts.width, height=facts.height)


def _reject(image: Image, obj: UploadedObject, reason: ErrorReason, sha256: str | None = None) -> Outcome:
    """`sha256`: of the bytes rejected, when they were read whole."""
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
    if sha256 is not None:
        changes["sha256"] = sha256  # else the declared one stays (or none)
    if images_table.record_verdict(image, changes, obj.sequencer) is None:
        return _lost(image, obj)
    if image.sha256 is not None:
        if reason.code in _BYTES_REJECTED and sha256 == image.sha256:
            hashes_table.mark_rejected(image, reason)
        else:
            hashes_table.release(image)
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
