"""The one life of an image record, shared by confirm-upload, PATCH, the S3 trigger and cleanup.

    uploading ──► uploaded     only for an object version that passed inspection (the S3 trigger)
        │            ▲
        ▼            │         a newer object version (a retry through the same URL) passed inspection
      error ─────────┘

`uploaded` is final and nothing goes back to `uploading`. A writer calls `check` first, for a 409
that says why, and its DynamoDB write carries the same rule as a condition (`sources`), so that a
concurrent writer cannot slip a forbidden transition in between.
"""

from uploads_core.errors import ConflictError
from uploads_core.models import ImageStatus

_UPLOADING, _UPLOADED, _ERROR = ImageStatus.UPLOADING, ImageStatus.UPLOADED, ImageStatus.ERROR

# Target -> the statuses it may be written over. `error` over `error`: a newer version rejected too.
_SOURCES: dict[ImageStatus, frozenset[ImageStatus]] = {
    _UPLOADING: frozenset(),
    _UPLOADED: frozenset({_UPLOADING, _ERROR}),
    _ERROR: frozenset({_UPLOADING, _ERROR}),
}


class TransitionRefused(ConflictError):
    """The state machine does not allow this change; the message says why."""


def sources(target: ImageStatus) -> frozenset[ImageStatus]:
    """The statuses a record may have when `target` is written (the writes' condition)."""
    return _SOURCES[target]


def check(current: ImageStatus, target: ImageStatus, *, inspected: bool = False) -> None:
    """Raises TransitionRefused unless `current -> target` is allowed.

    `inspected`: the change comes from the S3 trigger, for an object version that it just read and
    found to be the declared image. Nothing else can make an image `uploaded`.
    """
    if current == _UPLOADED:
        raise TransitionRefused("it is 'uploaded', which is final (delete the image to remove it)")
    if target == _UPLOADING:
        raise TransitionRefused(f"it is '{current}', and nothing goes back to 'uploading'")
    if target == _UPLOADED and not inspected:
        raise TransitionRefused(
            "only the verification of its uploaded bytes makes an image 'uploaded' "
            "(PUT the file, then confirm-upload waits for the verdict)"
        )
