"""The image-uploads API over HTTP (requests + urllib3 retries), and the presigned S3 PUT."""

from collections.abc import Iterator
from typing import Any, BinaryIO

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_API = "http://localhost:3000"
PAGE_SIZE = 1000  # the API's largest `limit`
TIMEOUT = (5, 60)  # connect, read (seconds)


class ApiUnreachable(Exception):
    """No answer at all from the API (refused, DNS, timeout): the CLI exits 2 with one line."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _session(retry: Retry, pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _detail(response: requests.Response) -> str:
    """FastAPI-shaped errors: {"detail": str | [{"loc", "msg"}]}; anything else as text."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail)


class Api:
    def __init__(self, base_url: str, pool_size: int = 10) -> None:
        self.base = base_url.rstrip("/")
        # API calls: urllib3 retries connection errors, and 429/5xx on idempotent methods only
        # (a retried prepare-upload could reserve the same files twice).
        api_retry = Retry(
            total=3,
            backoff_factor=0.3,
            status_forcelist=(429, 500, 502, 503, 504),
            raise_on_status=False,
        )
        self.http = _session(api_retry, pool_size)
        # S3 PUTs: the uploader retries them itself, since a retry may need a fresh URL.
        self.s3 = _session(Retry(total=0, raise_on_status=False), pool_size)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.http.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base} ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response

    def prepare(self, dataset: int, files: list[dict]) -> list[dict]:
        body = {"files": files}
        return self._call("POST", f"/datasets/{dataset}/images/prepare-upload", json=body).json()["uploads"]

    def confirm(self, dataset: int, image_ids: list[int]) -> dict:
        body = {"image_ids": image_ids}
        return self._call("POST", f"/datasets/{dataset}/images/confirm-upload", json=body).json()

    def images(self, dataset: int, status: str | None = None) -> Iterator[dict]:
        """Every image of the dataset (optionally of one status), page by page with the cursor."""
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if status:
            params["status"] = status
        while True:
            response = self._call("GET", f"/datasets/{dataset}/images", params=params)
            yield from response.json()
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                return
            params["cursor"] = cursor

    def get(self, image_id: int) -> dict:
        return self._call("GET", f"/images/{image_id}").json()

    def delete(self, image_id: int) -> dict:
        return self._call("DELETE", f"/images/{image_id}").json()

    def put(self, url: str, body: BinaryIO, size: int, mime_type: str) -> requests.Response:
        """PUT to a presigned URL; it signs Content-Type and Content-Length, so both are exact."""
        headers = {"Content-Type": mime_type, "Content-Length": str(size)}
        return self.s3.put(url, data=body, headers=headers, timeout=TIMEOUT)
