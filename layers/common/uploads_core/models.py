"""Public request/response shapes of the API (the design note's contract) and the image record."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from uploads_core.settings import get_settings

# The upload rules, written here only: the models below enforce them, `GET /limits` publishes them, and
# the CLI and the upload page read them from there. No SVG: it carries script.
# HEIC/HEIF (phones) and AVIF: the trigger decodes them (pi-heif, Pillow) and thumbnails them as WebP.
MimeType = Literal[
    "image/jpeg", "image/png", "image/webp", "image/gif", "image/heic", "image/heif", "image/avif"
]
ALLOWED_MIME_TYPES: tuple[str, ...] = get_args(MimeType)
MIN_FILE_SIZE = 1
# The largest file_size is the stack's MaxUploadBytes parameter: settings.max_upload_bytes.
MAX_FILENAME_LENGTH = 255
MAX_BATCH = 1000  # files per prepare-upload, ids per confirm-upload
MAX_PAGE_SIZE = 1000  # `limit` of a listing
# A URL signed with the function role's temporary credentials stops working when their session
# ends, whatever X-Amz-Expires says, and Lambda does not say how long that session has left: one
# hour (the note's default) is the longest lifetime we promise. Cleanup relies on this upper bound.
MAX_EXPIRES_IN = 3600
DEFAULT_EXPIRES_IN = 3600
# `skip` reads skip + limit rows (DynamoDB has no offset): deeper pages go through the cursor.
MAX_SKIP = 10_000
# JavaScript clients read ids as doubles: keep them exact there.
MAX_ID = 2**53 - 1
# Thumbnails live outside the trigger's `datasets/` prefix, so writing one never re-triggers.
THUMBNAIL_PREFIX = "thumbnails/"
# Content addressing: a file's SHA-256 as 64 lowercase hex digits; hashes per lookup.
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_LOOKUP = 1000


def _json_number(value: object) -> object:
    # JSON Schema's integer: 12 and 12.0 yes; "12" and true no (pydantic's lax mode takes both).
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_number)]
PositiveId = Annotated[int, Field(gt=0, le=MAX_ID), BeforeValidator(_json_number)]
Dimension = Annotated[int, Field(gt=0, le=1_000_000), BeforeValidator(_json_number)]
ExpiresIn = Annotated[int, Field(ge=1, le=MAX_EXPIRES_IN)]
Sha256 = Annotated[
    str, Field(pattern=SHA256_PATTERN, description="SHA-256 of the file's bytes, 64 lowercase hex digits")
]


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ISO 8601 UTC with a `Z`, as in the note (`2025-10-02T10:00:00Z`).
UtcDateTime = Annotated[datetime, PlainSerializer(format_utc, return_type=str)]


class Shape(BaseModel):
    """The base of these models: each builds its validator when first used, not at import. A cold start
    builds only those of the route or event it serves (building all of them took ~90 ms)."""

    model_config = ConfigDict(defer_build=True)


class ImageStatus(StrEnum):
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    ERROR = "error"


class FileToUpload(Shape):
    filename: str = Field(min_length=1, max_length=MAX_FILENAME_LENGTH, examples=["car1.jpg"])
    # The maximum is a deployment parameter: the schema reads it when it is generated (GET /openapi.json).
    file_size: JsonInt = Field(
        ge=MIN_FILE_SIZE,
        examples=[1024000],
        json_schema_extra=lambda schema: schema.update(maximum=get_settings().max_upload_bytes),
    )
    mime_type: MimeType = Field(examples=["image/jpeg"])
    sha256: Sha256 | None = Field(
        default=None,
        description="With it, the upload URL also signs `x-amz-checksum-sha256` (S3 refuses other bytes), "
        "and a file already `uploaded` (or rejected) in the dataset gets no URL",
    )

    @field_validator("file_size")
    @classmethod
    def _at_most_max_upload_bytes(cls, value: int) -> int:
        limit = get_settings().max_upload_bytes  # a deployment parameter: read when a request comes
        if value > limit:
            raise PydanticCustomError(
                "less_than_equal", "Input should be less than or equal to {le}", {"le": limit}
            )
        return value


class PrepareUploadRequest(Shape):
    files: list[FileToUpload] = Field(min_length=1, max_length=MAX_BATCH)


class ErrorReason(Shape):
    """Why the processor rejected an upload: a short code and a sentence for people."""

    code: str
    message: str


class UploadTicket(Shape):
    image_id: int
    upload_url: str | None = Field(description="null when the file is a duplicate or was rejected before")
    s3_key: str
    expires_in: int | None
    upload_headers: dict[str, str] | None = Field(
        default=None,
        description="The exact headers to send with the PUT: Content-Type, and x-amz-checksum-sha256 "
        "(base64 of the digest) when `sha256` was given; null when there is no URL",
    )
    duplicate_of: int | None = Field(
        default=None,
        description="The image that already holds these bytes (`uploaded` in this dataset, or the first "
        "of this batch): no new record, no URL",
    )
    rejected_before: ErrorReason | None = Field(
        default=None, description="These bytes were rejected before in this dataset: no URL, do not resend"
    )


class PrepareUploadResponse(Shape):
    uploads: list[UploadTicket]


class ConfirmUploadRequest(Shape):
    image_ids: list[PositiveId] = Field(min_length=1, max_length=MAX_BATCH)


class ConfirmUploadResponse(Shape):
    message: str
    updated_count: int = Field(description="Requested images of this dataset that are `uploaded`")
    total_requested: int
    pending_count: int = Field(
        default=0,
        description="Objects present but not yet verified when confirm stopped waiting: still "
        "`uploading`; confirm again (or poll the image) to see their verdict",
    )


class Image(Shape):
    """One image record; field order follows the note's example, additions come after."""

    id: int
    filename: str
    s3_key: str
    file_size: int
    mime_type: str
    width: int | None = None
    height: int | None = None
    status: ImageStatus
    dataset_id: int
    created_at: UtcDateTime
    updated_at: UtcDateTime
    orientation: int | None = Field(default=None, description="EXIF orientation 1..8 of the stored image")
    error_reason: ErrorReason | None = None
    upload_expires_at: UtcDateTime | None = Field(
        default=None, description="When the upload URL stops working (cleanup waits past it)"
    )
    display_width: int | None = Field(
        default=None,
        description="Width as shown, after the orientation (EXIF; HEIF's irot): set when uploaded",
    )
    display_height: int | None = Field(default=None, description="Height as shown, after the orientation")
    placeholder: str | None = Field(
        default=None,
        description="A ThumbHash of the picture (base64, ~25 bytes) to paint until the thumbnail loads",
    )
    has_location: bool | None = Field(
        default=None, description="The original carries GPS coordinates (EXIF): set when uploaded"
    )
    sha256: str | None = Field(
        default=None,
        description="SHA-256 of the bytes (hex): declared at prepare-upload (S3 refuses other bytes), or "
        "computed by the S3 trigger; an `uploaded` image's is always the one of its stored bytes",
    )
    # Bookkeeping of the S3 trigger, not part of the API's answers: the object version last judged
    # (the verified one when `uploaded`), its event's sequencer, and the thumbnail made from it.
    thumbnail_key: str | None = Field(default=None, exclude=True)
    object_sequencer: str | None = Field(default=None, exclude=True)
    object_etag: str | None = Field(default=None, exclude=True)
    object_version: str | None = Field(default=None, exclude=True)


class ImageWithUrl(Image):
    download_url: str | None = None
    url_expires_in: int | None = None
    thumbnail_url: str | None = None


class DownloadUrl(Shape):
    download_url: str
    expires_in: int


class ImagePatch(Shape):
    """Any of the three; a field left out is unchanged, and `null` is refused, not read as "unset"."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Defaults are not validated, so None means "not given" while the schema stays non-nullable.
    width: Dimension = None  # type: ignore[assignment]
    height: Dimension = None  # type: ignore[assignment]
    status: ImageStatus = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one of width, height, status")
        return self


class ErrorDetail(Shape):
    """Every 4xx other than validation errors: `{"detail": "what went wrong"}`."""

    detail: str


class DeleteResult(Shape):
    message: str
    id: int


class ImagePage(Shape):
    """A page of a dataset listing and the opaque cursor of the next one."""

    items: list[Image]
    next_cursor: str | None = None


class Role(StrEnum):
    """What a member may do in a dataset (AuthMode=jwt); each role can do what the ones before it can."""

    VIEWER = "viewer"  # list, with-urls, GET an image, download-url
    EDITOR = "editor"  # also prepare-upload, confirm-upload, PATCH and DELETE images
    OWNER = "owner"  # also manage members

    @property
    def rank(self) -> int:
        return list(Role).index(self)


# A member's `sub` as identity providers write it (Cognito and Keycloak uuids, Auth0
# "google-oauth2|1234", Okta "00u...", base64url ids, e-mail addresses): 1..255 of these characters.
# They are one path segment of the member routes, so no "/"; "#" starts the members table's own items.
SUB_PATTERN = r"^[A-Za-z0-9._~@|:+=,!*'()$&;-]{1,255}$"


class DatasetAccess(Shape):
    """A dataset and the caller's role in it."""

    dataset_id: int
    role: Role


class Member(Shape):
    sub: str
    role: Role


class RoleGrant(Shape):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberRemoved(Shape):
    message: str
    sub: str


class HashLookupRequest(Shape):
    sha256: list[Sha256] = Field(min_length=1, max_length=MAX_LOOKUP)


class HashMatch(Shape):
    sha256: str
    image_id: int
    status: ImageStatus
    error_reason: ErrorReason | None = None


class HashLookupResponse(Shape):
    """Which of the hashes an image of the dataset holds (uploaded, being uploaded, or rejected)."""

    found: list[HashMatch]
    missing: list[str]


class HashState(StrEnum):
    """Who holds a hash in a dataset (the hashes table), see hashes_table.py."""

    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    REJECTED = "rejected"


class HashClaim(Shape):
    """The image holding a (dataset, sha256): the one being uploaded, uploaded, or rejected with it."""

    dataset_id: int
    sha256: str
    image_id: int
    state: HashState
    s3_key: str
    file_size: int
    mime_type: str
    upload_expires_at: UtcDateTime | None = None
    error_reason: ErrorReason | None = None
