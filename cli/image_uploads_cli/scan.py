"""Finds the files of a folder the API would accept; flags the others so they are never sent."""

import mimetypes
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

ACCEPTED = {"image/jpeg", "image/png", "image/webp", "image/gif"}
MAX_SIZE = 10 * 1024 * 1024
MAX_NAME = 255


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # relative path with `/` separators: the record's `filename`, and the resume key
    size: int
    mime_type: str

    def declaration(self) -> dict:
        return {"filename": self.name, "file_size": self.size, "mime_type": self.mime_type}


@dataclass(frozen=True)
class Refused:
    name: str
    reason: str


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
    return None


def _classify(path: Path, name: str, use_magic: bool) -> LocalFile | Refused:
    size = path.stat().st_size
    mime_type = mimetypes.guess_type(path.name)[0]
    if use_magic:
        with path.open("rb") as f:
            mime_type = sniff(f.read(16)) or "content is not a JPEG, PNG, WebP or GIF image"
    if mime_type not in ACCEPTED:
        return Refused(name, mime_type if use_magic else f"type {mime_type or 'unknown'} not accepted")
    if not 1 <= size <= MAX_SIZE:
        return Refused(name, f"size {size} bytes outside 1 byte..10 MiB")
    if len(name) > MAX_NAME:
        return Refused(name, f"relative path longer than {MAX_NAME} characters")
    return LocalFile(path, name, size, mime_type)


def scan(root: Path, use_magic: bool = False) -> tuple[list[LocalFile], list[Refused]]:
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
            result = _classify(path, name, use_magic)
            (accepted if isinstance(result, LocalFile) else refused).append(result)
    return accepted, refused
