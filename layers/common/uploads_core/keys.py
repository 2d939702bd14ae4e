"""S3 object keys of images."""

import unicodedata
import uuid

from uploads_core.models import THUMBNAIL_PREFIX

# S3 allows 1024 bytes per key; the prefix and uuid take < 100 of them.
_MAX_NAME_BYTES = 200


def safe_filename(filename: str) -> str:
    """A readable name that cannot leave its key prefix or confuse a client that saves it.

    Keeps letters, accents, spaces and punctuation (`voiture été (1).jpg` stays as is); drops
    control, format (bidi overrides) and NUL characters; path separators become `_`, and `..`
    runs collapse so no path segment can be `.` or `..`.
    """
    name = unicodedata.normalize("NFC", filename)
    name = "".join(
        "_" if ch in "/\\" else ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
    )
    while ".." in name:
        name = name.replace("..", ".")
    name = name.strip(" .")
    if len(name.encode()) > _MAX_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if dot and len(ext) <= 10 else ""
        stem = name[: len(name) - len(ext)] if ext else name
        budget = _MAX_NAME_BYTES - len(ext.encode())
        stem = stem.encode()[:budget].decode(errors="ignore")
        name = stem + ext
    return name or "file"


def images_prefix(dataset_id: int) -> str:
    """Where every uploaded object of one dataset lives."""
    return f"datasets/{dataset_id}/images/"


def image_key(dataset_id: int, filename: str) -> str:
    return f"{images_prefix(dataset_id)}{uuid.uuid4()}_{safe_filename(filename)}"


def thumbnail_prefix(dataset_id: int, image_id: int) -> str:
    """Where every thumbnail of one image lives: deleting the image empties this prefix."""
    return f"{THUMBNAIL_PREFIX}{dataset_id}/{image_id}/"


def thumbnail_key(dataset_id: int, image_id: int, extension: str) -> str:
    # One key per write: two invocations judging one image never share (or delete) each other's.
    return f"{thumbnail_prefix(dataset_id, image_id)}{uuid.uuid4().hex}.{extension}"
