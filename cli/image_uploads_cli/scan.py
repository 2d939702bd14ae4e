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


def _matches(signature: dict, head: bytes) -> bool:
    """One of `GET /limits`' `signatures` (its description there): its magic numbers, then its brands."""
    for offset, expected in signature["magic"]:
        if head[offset : offset + len(expected)] != expected:
            return False
    if not signature["ftyp_brands"]:
        return True
    if head[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]}
    if not signature["major_brand_only"]:
        brands |= {head[i : i + 4] for i in range(16, end - 3, 4)}
    return any(brand.encode() in brands for brand in signature["ftyp_brands"])


@dataclass(frozen=True)
class Limits:
    """The API's upload rules, as `GET /limits` publishes them (read once per run)."""

    mime_types: tuple[str, ...]
    signatures: tuple[dict, ...]  # how each type's first bytes look: the S3 trigger's own rule
    sniff_bytes: int
    names: dict[str, str]  # each type's name, for people
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
            signatures=tuple(_signature(s) for s in body["signatures"]),
            sniff_bytes=int(body["sniff_bytes"]),
            names={str(k): str(v) for k, v in body["type_names"].items()},
            min_file_size=int(body["min_file_size"]),
            max_file_size=int(body["max_file_size"]),
            max_filename_length=int(body["max_filename_length"]),
            max_batch=int(body["max_batch"]),
            max_page_size=int(body["max_page_size"]),
            max_lookup=int(body["max_lookup"]),
        )

    def sniff(self, head: bytes) -> str | None:
        """The image type a file's first `sniff_bytes` bytes show, as the S3 trigger will judge it."""
        return next((s["mime_type"] for s in self.signatures if _matches(s, head)), None)

    def type_names(self) -> str:
        """`JPEG, PNG, WebP or GIF`: the accepted types, for people."""
        names = [self.type_names_of(t) for t in self.mime_types]
        return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)

    def type_names_of(self, mime_type: str) -> str:
        return self.names.get(mime_type, mime_type)


def _signature(body: dict) -> dict:
    """A signature of `GET /limits`, its magic numbers as (offset, bytes): KeyError, TypeError or
    ValueError when it is not one."""
    return {
        "mime_type": str(body["mime_type"]),
        "magic": [(int(m["offset"]), bytes.fromhex(m["hex"])) for m in body["magic"]],
        "ftyp_brands": [str(b) for b in body["ftyp_brands"]],
        "major_brand_only": bool(body["major_brand_only"]),
    }


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
        mime_type = limits.sniff(f.read(limits.sniff_bytes))
    if mime_type is None:
        return Refused(name, f"content is not a {limits.type_names()} image")
    if mime_type not in limits.mime_types:
        return Refused(
            name, f"{limits.type_names_of(mime_type)} images are not accepted (only {limits.type_names()})"
        )
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
