"""Data access for the images bucket (S3): presigned URLs, existence checks, reads and deletion.

The four operations the design note names live here: `generate_presigned_upload_url`,
`generate_presigned_download_url`, `delete_file` and `file_exists`.

The bucket is versioned, and every deletion here is of exact versions, which S3 then removes for
good: a rejected or replaced upload leaves no noncurrent copy behind, and a deletion never removes
bytes that were not judged (a newer PUT through the same URL is another version).
"""

import base64
import random
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointError

from uploads_core import aws
from uploads_core.presign import Presigner
from uploads_core.settings import get_settings

# DeleteObjects takes up to 1000 keys (or versions) per call.
_DELETE_BATCH = 1000
_GONE = ("404", "NoSuchKey", "NotFound", "NoSuchVersion")
# head_many's presigned HEADs: valid long enough for every retry within the function's timeout.
_HEAD_URL_SECONDS = 300
# What botocore's standard retry mode retries on a bodiless (HEAD) answer: throttling and 5xx.
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 20  # standard mode's cap
# current_objects lists instead of HEADing while a page of (up to 1000) listed versions answers at
# least this many of the keys asked: one page then replaces that many HEADs, in calls and in CPU.
_LIST_WORTH = 50
_LIST_PAGE = 1000  # ListObjectVersions' largest page


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None
    etag: str | None
    version_id: str | None = None


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
        connect_timeout=settings.aws_connect_timeout,
        read_timeout=settings.aws_read_timeout,
        retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts},
    )
    # botocore directly: boto3 would also import s3transfer (~100 ms of cold start) for nothing.
    return aws.session().create_client("s3", region_name=settings.region, config=config)


def _bucket() -> str:
    return get_settings().images_bucket


@lru_cache(maxsize=1)
def _presigner_for(client, bucket: str) -> Presigner:
    return Presigner(client, bucket)


def _presigner() -> Presigner:
    """Signs URLs locally, byte for byte as the client would (see presign.py); one per client and bucket."""
    return _presigner_for(_s3(), _bucket())


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def generate_presigned_upload_url(
    s3_key: str, content_type: str, content_length: int, expires_in: int, sha256: str | None = None
) -> str:
    """A PUT URL that signs Content-Type and Content-Length: S3 refuses any other type or size; with
    `sha256` (hex) it also signs x-amz-checksum-sha256, and S3 refuses any other bytes (400 BadDigest)."""
    checksum = None if sha256 is None else checksum_header(sha256)
    return _presigner().put(s3_key, content_type, content_length, expires_in, checksum_sha256=checksum)


def checksum_header(sha256: str) -> str:
    """S3's x-amz-checksum-sha256 value of a hex digest: the digest in base64."""
    return base64.b64encode(bytes.fromhex(sha256)).decode()


def upload_headers(content_type: str, sha256: str | None) -> dict[str, str]:
    """The headers a PUT through `generate_presigned_upload_url` must carry (Content-Length aside)."""
    headers = {"Content-Type": content_type}
    if sha256 is not None:
        headers["x-amz-checksum-sha256"] = checksum_header(sha256)
    return headers


def generate_presigned_download_url(s3_key: str, expires_in: int, version_id: str | None = None) -> str:
    """A GET URL; with `version_id`, of exactly that version whatever is PUT to the key later."""
    return _presigner().get(s3_key, expires_in, version_id=version_id)


def head(s3_key: str) -> ObjectInfo | None:
    try:
        response = _s3().head_object(Bucket=_bucket(), Key=s3_key)
    except ClientError as exc:
        if _code(exc) in _GONE:
            return None
        raise
    return ObjectInfo(
        size=response["ContentLength"],
        content_type=response.get("ContentType"),
        etag=response.get("ETag"),
        version_id=response.get("VersionId"),
    )


def _send_head(client, url: str) -> AWSResponse:
    """One HEAD as botocore sends it: a handler of its `before-send` event may answer (moto, a
    stubber), else the client's own HTTP session (its pool, timeouts, TLS and proxy settings)."""
    request = AWSRequest(method="HEAD", url=url).prepare()
    _, answer = client.meta.events.emit_until_response("before-send.s3.HeadObject", request=request)
    return answer if answer is not None else client._endpoint.http_session.send(request)


def _head_presigned(s3_key: str) -> ObjectInfo | None:
    """HeadObject through a locally presigned URL: ~0.7 ms of CPU where botocore's HeadObject costs
    1.6-2.4 ms (endpoint rules, serialising, signing, parsing); confirm-upload makes up to 1000.

    Only a definite 404 means absent (confirm then marks the image missing); any other answer is an
    error once transient ones (throttling, 5xx, connection errors) were retried as botocore's
    standard mode does: the settings' attempts in all, with its jittered exponential backoff."""
    client, url = _s3(), _presigner().head(s3_key, _HEAD_URL_SECONDS)
    error: Exception | None = None
    for attempt in range(get_settings().aws_max_attempts):
        if attempt:
            time.sleep(random.random() * min(_MAX_BACKOFF_SECONDS, 2 ** (attempt - 1)))  # noqa: S311 - jitter
        try:
            response = _send_head(client, url)
        except (EndpointError, HTTPClientError) as exc:  # what standard mode retries: refused, reset, timeout
            error = exc
            continue
        status = response.status_code
        if status == 200:
            headers = response.headers
            return ObjectInfo(
                size=int(headers["Content-Length"]),
                content_type=headers.get("Content-Type"),
                etag=headers.get("ETag"),
                version_id=headers.get("x-amz-version-id"),
            )
        if status == 404:
            return None
        details = {"Code": str(status), "Message": f"HEAD {s3_key!r} answered {status}"}
        error = ClientError({"Error": details, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadObject")
        if status not in _TRANSIENT:
            break
    raise error


def head_many(s3_keys: Iterable[str]) -> dict[str, ObjectInfo | None]:
    """One presigned HEAD per key, run concurrently on the shared client's connection pool."""
    keys = list(dict.fromkeys(s3_keys))
    if not keys:
        return {}
    _presigner().fast  # noqa: B018 - the client and the presigner's probe made here, not by 32 threads at once
    workers = min(len(keys), get_settings().head_concurrency)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(keys, pool.map(_head_presigned, keys), strict=True))


def current_objects(prefix: str, s3_keys: Iterable[str]) -> dict[str, ObjectInfo | None]:
    """Each key's current object (None: no object, or a delete marker), listed where that is cheaper.

    S3 lists strongly consistently, so a ListObjectVersions page over `prefix` (1000 versions, keys
    in order, each key's latest first) answers every asked key up to its last key: one call where
    HEADs would take hundreds. Listing goes on while each page answers at least _LIST_WORTH keys (a
    dataset not much larger than the batch); keys not reached get a HEAD each. Listed answers carry
    no content type.
    """
    keys = set(s3_keys)
    listed = sorted(key for key in keys if key.startswith(prefix))
    found: dict[str, ObjectInfo | None] = {}
    if len(listed) >= _LIST_WORTH:
        asked, reached = set(listed), 0  # listed[:reached] are answered
        pages = (
            _s3()
            .get_paginator("list_object_versions")
            .paginate(Bucket=_bucket(), Prefix=prefix, PaginationConfig={"PageSize": _LIST_PAGE})
        )
        for page in pages:
            answered = len(found)
            for entry in page.get("Versions", []):
                if entry["IsLatest"] and entry["Key"] in asked:
                    found[entry["Key"]] = ObjectInfo(
                        size=entry["Size"],
                        content_type=None,
                        etag=entry.get("ETag"),
                        version_id=entry["VersionId"],
                    )
            # An asked key before the page's last one with no current version listed has none (or a
            # delete marker); after the last page, every key not listed has none.
            boundary = page["NextKeyMarker"] if page.get("IsTruncated") else None
            while reached < len(listed) and (boundary is None or listed[reached] < boundary):
                found.setdefault(listed[reached], None)
                reached += 1
            if boundary is None or len(found) - answered < _LIST_WORTH:
                break
    return found | head_many(key for key in keys if key not in found)


@dataclass(frozen=True)
class OpenedObject:
    body: BinaryIO  # a stream: bytes are fetched only as they are read
    size: int
    content_type: str | None
    etag: str | None


def open_version(s3_key: str, version_id: str) -> OpenedObject | None:
    """Streams one version of an object; None when that version no longer exists."""
    try:
        response = _s3().get_object(Bucket=_bucket(), Key=s3_key, VersionId=version_id)
    except ClientError as exc:
        # A version id that is now a delete marker answers 405 MethodNotAllowed.
        if _code(exc) in (*_GONE, "MethodNotAllowed", "405"):
            return None
        raise
    return OpenedObject(
        body=response["Body"],
        size=response["ContentLength"],
        content_type=response.get("ContentType"),
        etag=response.get("ETag"),
    )


def put_file(s3_key: str, data: bytes, content_type: str) -> str:
    """Writes an object; returns its version id."""
    response = _s3().put_object(Bucket=_bucket(), Key=s3_key, Body=data, ContentType=content_type)
    return response["VersionId"]


def file_exists(s3_key: str) -> bool:
    return head(s3_key) is not None


def delete_versions(versions: Iterable[tuple[str, str]]) -> None:
    """Removes these (key, version id) pairs for good, 1000 per DeleteObjects call."""
    objects = [{"Key": key, "VersionId": version} for key, version in dict.fromkeys(versions)]
    for start in range(0, len(objects), _DELETE_BATCH):
        chunk = objects[start : start + _DELETE_BATCH]
        response = _s3().delete_objects(Bucket=_bucket(), Delete={"Objects": chunk, "Quiet": True})
        if response.get("Errors"):
            raise RuntimeError(
                f"S3 could not delete {len(response['Errors'])} object versions: {response['Errors'][:3]}"
            )


def delete_version(s3_key: str, version_id: str) -> None:
    """Removes exactly this version for good: a newer one stays, an older one is current again."""
    _s3().delete_object(Bucket=_bucket(), Key=s3_key, VersionId=version_id)


def _versions_under(prefix: str, exact: bool) -> list[tuple[str, str]]:
    found = []
    for page in _s3().get_paginator("list_object_versions").paginate(Bucket=_bucket(), Prefix=prefix):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if not exact or entry["Key"] == prefix:
                found.append((entry["Key"], entry["VersionId"]))
    return found


def delete_everything(
    keys: Iterable[str] = (), prefixes: Iterable[str] = (), keep: Iterable[str] = ()
) -> int:
    """Removes every version (and delete marker) of these keys and of every key under these
    prefixes but the `keep` keys; returns how many went. One ListObjectVersions per key or prefix."""
    versions = [v for key in keys for v in _versions_under(key, exact=True)]
    versions += [v for prefix in prefixes for v in _versions_under(prefix, exact=False)]
    kept = set(keep)
    versions = [(key, version) for key, version in versions if key not in kept]
    delete_versions(versions)
    return len(versions)


def delete_file(s3_key: str) -> None:
    """The note's `delete_file`: every version of the key goes."""
    delete_everything(keys=[s3_key])
