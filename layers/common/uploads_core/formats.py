"""What each accepted image type's first bytes look like: the S3 trigger's rule, published by `GET /limits`
so that the CLI and the upload page judge a file by its bytes exactly as the trigger will (a camera's
`.mpo` is a JPEG; HTML named `.png` is not an image), and never keep a copy of their own."""

from pydantic import Field

from uploads_core.models import Shape

SNIFF_BYTES = 64  # every magic number below, and an ISO BMFF `ftyp` box's brands, are within these


class Magic(Shape):
    offset: int = Field(ge=0, description="Where the bytes start in the file")
    hex: str = Field(description="The bytes, in lowercase hexadecimal")


class Signature(Shape):
    """A file is of `mime_type` when every `magic` matches and, when `ftyp_brands` is given, its ISO BMFF
    `ftyp` box (bytes 4-8 `ftyp`) names one of them: as its major brand (bytes 8-12), or, unless
    `major_brand_only`, also among its compatible brands (from byte 16 to the box's end, its size being
    bytes 0-4, big-endian). The first signature a file matches, in order, gives its type."""

    mime_type: str
    magic: list[Magic] = Field(default_factory=list)
    ftyp_brands: list[str] = Field(default_factory=list)
    major_brand_only: bool = False


def _magic(*pairs: tuple[int, bytes]) -> list[Magic]:
    return [Magic(offset=offset, hex=data.hex()) for offset, data in pairs]


# In order: a file naming an AVIF brand anywhere is AVIF, even when its major brand is a HEIF one. HEIF:
# the HEVC brands and the generic image ones, which pi-heif's plugin opens; a client may declare it as
# image/heic or image/heif (see DECLARED_AS).
SIGNATURES = (
    Signature(mime_type="image/jpeg", magic=_magic((0, b"\xff\xd8\xff"))),
    Signature(mime_type="image/png", magic=_magic((0, b"\x89PNG\r\n\x1a\n"))),
    Signature(mime_type="image/gif", magic=_magic((0, b"GIF87a"))),
    Signature(mime_type="image/gif", magic=_magic((0, b"GIF89a"))),
    Signature(mime_type="image/webp", magic=_magic((0, b"RIFF"), (8, b"WEBP"))),
    Signature(mime_type="image/avif", ftyp_brands=["avif", "avis"]),
    Signature(
        mime_type="image/heic",
        ftyp_brands=["heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "msf1"],
        major_brand_only=True,
    ),
)
# The other MIME types a client may declare for a sniffed one.
DECLARED_AS = {"image/heic": ("image/heic", "image/heif")}
# Each type's name, for people.
TYPE_NAMES = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "image/heic": "HEIC",
    "image/heif": "HEIF",
    "image/avif": "AVIF",
}


def _matches(signature: Signature, head: bytes) -> bool:
    for magic in signature.magic:
        expected = bytes.fromhex(magic.hex)
        if head[magic.offset : magic.offset + len(expected)] != expected:
            return False
    if not signature.ftyp_brands:
        return True
    if head[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]}
    if not signature.major_brand_only:
        brands |= {head[i : i + 4] for i in range(16, end - 3, 4)}
    return any(brand.encode() in brands for brand in signature.ftyp_brands)


def sniff(head: bytes) -> str | None:
    """The MIME type a file's first SNIFF_BYTES bytes show, or None when they are no accepted image."""
    return next((s.mime_type for s in SIGNATURES if _matches(s, head)), None)
