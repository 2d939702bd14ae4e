"""Opaque list cursors: the last id of a page, bound to its listing and signed."""

import base64
import hashlib
import hmac
import json

from uploads_core.errors import InvalidCursorError
from uploads_core.models import MAX_ID, ImageStatus
from uploads_core.settings import get_settings

_SIG_BYTES = 16


def _sign(payload: bytes) -> bytes:
    key = get_settings().cursor_secret.encode() or b"image-uploads-cursor"
    return hmac.new(key, payload, hashlib.sha256).digest()[:_SIG_BYTES]


def encode(
    dataset_id: int, status: ImageStatus | None, last_id: int, has_location: bool | None = None
) -> str:
    # The location filter is appended only when given: cursors issued before it existed stay valid.
    fields = [dataset_id, status, last_id] + ([] if has_location is None else [has_location])
    payload = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _sign(payload)).rstrip(b"=").decode()


def decode(cursor: str, dataset_id: int, status: ImageStatus | None, has_location: bool | None = None) -> int:
    """The last id of the previous page; InvalidCursorError for anything not issued for this listing."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError as exc:
        raise InvalidCursorError("cursor is not valid") from exc
    payload, signature = raw[:-_SIG_BYTES], raw[-_SIG_BYTES:]
    if len(raw) <= _SIG_BYTES or not hmac.compare_digest(signature, _sign(payload)):
        raise InvalidCursorError("cursor is not valid")
    try:
        cursor_dataset, cursor_status, last_id, *cursor_location = json.loads(payload)
    except (ValueError, TypeError) as exc:
        raise InvalidCursorError("cursor is not valid") from exc
    if cursor_location not in ([], [True], [False]):
        raise InvalidCursorError("cursor is not valid")
    if (
        cursor_dataset != dataset_id
        or cursor_status != status
        or (cursor_location or [None])[0] is not has_location
    ):
        raise InvalidCursorError(
            "cursor belongs to another listing (dataset, status or location filter differ)"
        )
    if not isinstance(last_id, int) or not 0 < last_id <= MAX_ID:
        raise InvalidCursorError("cursor is not valid")
    return last_id
