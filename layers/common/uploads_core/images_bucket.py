"""Data access for the images bucket (S3): presigned URLs, existence checks, deletion.

The four operations the design note names live here: `generate_presigned_upload_url`,
`generate_presigned_download_url`, `delete_file` and `file_exists`.
"""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from uploads_core.presign import Presigner
from uploads_core.settings import get_settings


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None
    etag: str | None


@lru_cache(maxsize=1)
def _s3():
    """One client per container: presigning 1000 URLs reuses it, with no per-URL setup."""
    settings = get_settings()
    config = Config(
        signature_version="s3v4",
        # Virtual-hosted regional URLs on AWS; path-style when the endpoint is overridden
        # (an IP or localhost cannot carry the bucket as a subdomain).
        s3={"addressing_style": "path" if settings.aws_endpoint_url else "virtual"},
        max_pool_connections=settings.head_concurrency,
        retries={"mode": "standard"},
    )
    # botocore directly: boto3 would also import s3transfer (~100 ms of cold start) for nothing.
    return botocore.session.get_session().create_client("s3", region_name=settings.region, config=config)


def _bucket() -> str:
    return get_settings().images_bucket


@lru_cache(maxsize=1)
def _presigner_for(client, bucket: str) -> Presigner:
    return Presigner(client, bucket)


def _presigner() -> Presigner:
    """Signs URLs locally, byte for byte as the client would (see presign.py); one per client and bucket."""
    return _presigner_for(_s3(), _bucket())


def generate_presigned_upload_url(
    s3_key: str, content_type: str, content_length: int, expires_in: int
) -> str:
    """A PUT URL that signs Content-Type and Content-Length: S3 refuses any other type or size."""
    return _presigner().put(s3_key, content_type, content_length, expires_in)


def generate_presigned_download_url(s3_key: str, expires_in: int) -> str:
    return _presigner().get(s3_key, expires_in)


def head(s3_key: str) -> ObjectInfo | None:
    try:
        response = _s3().head_object(Bucket=_bucket(), Key=s3_key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return ObjectInfo(
        size=response["ContentLength"],
        content_type=response.get("ContentType"),
        etag=response.get("ETag"),
    )


def head_many(s3_keys: Iterable[str]) -> dict[str, ObjectInfo | None]:
    """One HeadObject per key, run concurrently on the shared client."""
    keys = list(dict.fromkeys(s3_keys))
    if not keys:
        return {}
    workers = min(len(keys), get_settings().head_concurrency)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(keys, pool.map(head, keys), strict=True))


@dataclass(frozen=True)
class OpenedObject:
    body: BinaryIO  # a stream: bytes are fetched only as they are read
    size: int
    content_type: str | None
    etag: str | None


def _missing_or_changed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchKey",
        "NotFound",
        "PreconditionFailed",
        "412",
    )


def open_object(s3_key: str, etag: str | None = None) -> OpenedObject | None:
    """Streams an object; None when it is gone or (with `etag`) was replaced by another version."""
    params = {"Bucket": _bucket(), "Key": s3_key}
    if etag:
        params["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
    try:
        response = _s3().get_object(**params)
    except ClientError as exc:
        if _missing_or_changed(exc):
            return None
        raise
    return OpenedObject(
        body=response["Body"],
        size=response["ContentLength"],
        content_type=response.get("ContentType"),
        etag=response.get("ETag"),
    )


def put_file(s3_key: str, data: bytes, content_type: str) -> None:
    _s3().put_object(Bucket=_bucket(), Key=s3_key, Body=data, ContentType=content_type)


def file_exists(s3_key: str) -> bool:
    return head(s3_key) is not None


def delete_file(s3_key: str) -> None:
    _s3().delete_object(Bucket=_bucket(), Key=s3_key)


def delete_files(s3_keys: Iterable[str | None]) -> None:
    """Deletes the given keys (None entries skipped) with one DeleteObjects call per 1000."""
    keys = [k for k in dict.fromkeys(s3_keys) if k]
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        response = _s3().delete_objects(
            Bucket=_bucket(), Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
        )
        if response.get("Errors"):
            raise RuntimeError(
                f"S3 could not delete {len(response['Errors'])} objects: {response['Errors'][:3]}"
            )
