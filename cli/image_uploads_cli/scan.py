"""Finds the files of a folder the API would accept; flags the others so they are never sent.

A file is judged by its bytes, as the S3 trigger judges it, never by its name: a camera's `.mpo` (a
JPEG with more images after the first), a `.jfif` or a `.JPG` is a JPEG; HTML named `.png` is not an
image. The accepted types and sizes are the API's own, read from `GET /limits` (see `Limits`).
"""

import hashlib
import os
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

# The magic numbers the S3 trigger recognises (functions/process_upload/upload_processor/inspection.py),
# the MIME type each one is declared as, and its name for people.
SNIFF_BYTES = 64  # an ISO BMFF `ftyp` box (HEIC, AVIF) lists its brands in its first 64 bytes
FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "image/heic": "HEIC",
    "image/heif": "HEIF",
    "image/avif": "AVIF",
}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}


def sniff(head: bytes) -> str | None:
    """The image type given by a file's first bytes (the server judges bytes, not names)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":  # major brand, minor version, compatible brands to the box's end
        end = min(int.from_bytes(head[:4], "big"), len(head))
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
        if brands & _AVIF_BRANDS:
            return "image/avif"
        if head[8:12] in _HEIF_BRANDS:
            return "image/heic"  # the server takes image/heic or image/heif for any HEIF file
    return None


@dataclass(frozen=True)
class Limits:
    """The API's upload rules, as `GET /limits` publishes them (read once per run)."""

    mime_types: tuple[str, ...]
    min_file_size: int
    max_file_size: int
    max_filename_length: int
    max_batch: int
    max_page_size: int
    max_lookup: int

    @classmethod
    def from_json(cls, body: dict) -> "Limits":
        """Raises KeyError, TypeError or ValueError when `body` is not the API's answer."""
        return cls(
            mime_types=tuple(str(t) for t in body["mime_types"]),
            min_file_size=int(body["min_file_size"]),
            max_file_size=int(body["max_file_size"]),
            max_filename_length=int(body["max_filename_length"]),
            max_batch=int(body["max_batch"]),
            max_page_size=int(body["max_page_size"]),
            max_lookup=int(body["max_lookup"]),
        )

    def type_names(self) -> str:
        """`JPEG, PNG, WebP or GIF`: the accepted types, for people."""
        names = [FORMATS.get(t, t) for t in self.mime_types]
        return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # relative path with `/` separators: the record's `filename`, and the resume key
    size: int
    mime_type: str  # from the bytes
    sha256: str | None = None  # of the bytes: what resuming goes by (a renamed file is not sent again)

    def declaration(self) -> dict:
        declared = {"filename": self.name, "file_size": self.size, "mime_type": self.mime_type}
        return declared | ({"sha256": self.sha256} if self.sha256 else {})

    def hashed(self) -> "LocalFile":
        """This file with the SHA-256 of its bytes, read in chunks (never whole in memory)."""
        with self.path.open("rb") as f:
            return replace(self, sha256=hashlib.file_digest(f, "sha256").hexdigest())


@dataclass(frozen=True)
class Refused:
    name: str
    reason: str


def _size(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} byte{'' if size == 1 else 's'}"


def _classify(path: Path, name: str, limits: Limits) -> LocalFile | Refused:
    size = path.stat().st_size
    if size < limits.min_file_size:
        return Refused(
            name, "empty file" if size == 0 else f"{size} bytes, under {_size(limits.min_file_size)}"
        )
    if size > limits.max_file_size:
        return Refused(name, f"{size} bytes, over {_size(limits.max_file_size)}")
    with path.open("rb") as f:
        mime_type = sniff(f.read(SNIFF_BYTES))
    if mime_type is None:
        return Refused(name, f"content is not a {limits.type_names()} image")
    if mime_type not in limits.mime_types:
        return Refused(name, f"{FORMATS[mime_type]} images are not accepted (only {limits.type_names()})")
    if len(name) > limits.max_filename_length:
        return Refused(name, f"relative path longer than {limits.max_filename_length} characters")
    return LocalFile(path, name, size, mime_type)


def scan(root: Path, limits: Limits) -> tuple[list[LocalFile], list[Refused]]:
    """Walks `root` recursively in name order; hidden files and folders (.git, .DS_Store) are ignored."""
    accepted: list[LocalFile] = []
    refused: list[Refused] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(f for f in files if not f.startswith(".")):
            path = Path(folder, file)
            # NFC: macOS writes decomposed accents; the same folder must match from any OS.
            name = unicodedata.normalize("NFC", path.relative_to(root).as_posix())
            if not path.is_file():
                refused.append(Refused(name, "not a regular file"))
                continue
            try:
                result = _classify(path, name, limits)
            except OSError as exc:  # unreadable (permissions), or gone since the walk
                result = Refused(name, f"cannot read the file: {exc.strerror}")
            (accepted if isinstance(result, LocalFile) else refused).append(result)
    return accepted, refused
