"""GET /limits: the upload rules, published so that clients (the CLI, the upload page) never copy them."""

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import Field

from uploads_core import formats, models
from uploads_core.settings import get_settings

router = APIGatewayHttpRouter()

# Public data that changes only with a deployment: a client may keep it a few minutes.
CACHE_CONTROL = "public, max-age=300"


class Magic(models.Shape):
    offset: int = Field(ge=0, description="Where the bytes start in the file")
    hex: str = Field(description="The bytes, in lowercase hexadecimal")


class Signature(models.Shape):
    """A file is of `mime_type` when every `magic` matches and, when `ftyp_brands` is given, its ISO
    BMFF `ftyp` box (bytes 4-8 `ftyp`) names one of them: as its major brand (bytes 8-12), or, unless
    `major_brand_only`, also among its compatible brands (from byte 16 to the box's end, its size being
    bytes 0-4, big-endian)."""

    mime_type: str
    magic: list[Magic]
    ftyp_brands: list[str]
    major_brand_only: bool


class UploadLimits(models.Shape):
    """What prepare-upload, confirm-upload and the listings accept (public, no token needed)."""

    mime_types: list[str] = Field(
        description="Accepted `mime_type` values. The S3 trigger judges the stored bytes, not names: the "
        "type declared must be the one the file's first bytes show (`signatures`; image/heic or image/heif "
        "for HEIF)"
    )
    signatures: list[Signature] = Field(
        description="How each type's first bytes look, in order: the first a file matches is its type, "
        "none means it is no accepted image. The S3 trigger sniffs with exactly these"
    )
    sniff_bytes: int = Field(description="How many first bytes of a file `signatures` need")
    type_names: dict[str, str] = Field(description="Each `mime_type`'s name, for people")
    min_file_size: int = Field(description="Smallest `file_size`, bytes")
    max_file_size: int = Field(description="Largest `file_size`, bytes")
    max_filename_length: int = Field(description="Longest `filename`, characters")
    max_batch: int = Field(description="Most files per prepare-upload, and ids per confirm-upload")
    max_expires_in: int = Field(description="Longest `expires_in` of presigned URLs, seconds")
    default_expires_in: int = Field(description="`expires_in` when none is given, seconds")
    max_page_size: int = Field(description="Largest `limit` of a listing")
    max_skip: int = Field(description="Largest `skip` of a listing (deeper: the cursor)")
    max_lookup: int = Field(description="Most hashes per `POST /datasets/{dataset_id}/images/lookup`")


def current_limits() -> UploadLimits:
    """Read at each call from what the request models enforce: uploads_core.models and the settings."""
    return UploadLimits(
        mime_types=list(models.ALLOWED_MIME_TYPES),
        signatures=[
            Signature(
                mime_type=s.mime_type,
                magic=[Magic(offset=offset, hex=data.hex()) for offset, data in s.magic],
                ftyp_brands=list(s.ftyp_brands),
                major_brand_only=s.major_brand_only,
            )
            for s in formats.SIGNATURES
        ],
        sniff_bytes=formats.SNIFF_BYTES,
        type_names=dict(formats.TYPE_NAMES),
        min_file_size=models.MIN_FILE_SIZE,
        max_file_size=get_settings().max_upload_bytes,
        max_filename_length=models.MAX_FILENAME_LENGTH,
        max_batch=models.MAX_BATCH,
        max_expires_in=models.MAX_EXPIRES_IN,
        default_expires_in=models.DEFAULT_EXPIRES_IN,
        max_page_size=models.MAX_PAGE_SIZE,
        max_skip=models.MAX_SKIP,
        max_lookup=models.MAX_LOOKUP,
    )


@router.get("/limits", summary="The upload rules (public)", responses={200: {"description": "The rules"}})
def get_limits() -> Response[UploadLimits]:
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=current_limits().model_dump(mode="json"),
        headers={"Cache-Control": CACHE_CONTROL},
    )
