"""What each accepted image type's first bytes look like: the S3 trigger's rule, published by `GET /limits`
so that the CLI and the upload page judge a file by its bytes exactly as the trigger will (a camera's
`.mpo` is a JPEG; HTML named `.png` is not an image), and never keep a copy of their own."""

from dataclasses import dataclass

SNIFF_BYTES = 64  # every magic number below, and an ISO BMFF `ftyp` box's brands, are within these


@dataclass(frozen=True)
class Signature:
    """How one type's first bytes look: every `magic` (offset, bytes) matches, and with `ftyp_brands` the
    file's ISO `ftyp` box names one (as published, and described for clients: routes/limits.py)."""

    mime_type: str
    magic: tuple[tuple[int, bytes], ...] = ()
    ftyp_brands: tuple[str, ...] = ()
    major_brand_only: bool = False


# In order: a file naming an AVIF brand anywhere is AVIF, even when its major brand is a HEIF one. HEIF:
# the HEVC brands and the generic image ones, which pi-heif's plugin opens; a client may declare it as
# image/heic or image/heif (see DECLARED_AS).
SIGNATURES = (
    Signature("image/jpeg", magic=((0, b"\xff\xd8\xff"),)),
    Signature("image/png", magic=((0, b"\x89PNG\r\n\x1a\n"),)),
    Signature("image/gif", magic=((0, b"GIF87a"),)),
    Signature("image/gif", magic=((0, b"GIF89a"),)),
    Signature("image/webp", magic=((0, b"RIFF"), (8, b"WEBP"))),
    Signature("image/avif", ftyp_brands=("avif", "avis")),
    Signature(
        "image/heic",
        ftyp_brands=("heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "msf1"),
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
    for offset, expected in signature.magic:
        if head[offset : offset + len(expected)] != expected:
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
