"""The image-uploads API over HTTP (requests + urllib3 retries), and the presigned S3 PUT."""

import re
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util.retry import Retry

from image_uploads_cli.scan import Limits

DEFAULT_API = "http://localhost:3000"
TIMEOUT = (5, 60)  # connect, read (seconds)
ROLES = ("viewer", "editor", "owner")
UNAUTHORIZED_HINT = (
    "the API refused the token (missing, expired or invalid): pass --token or set IMAGE_UPLOADS_TOKEN"
)
# A bearer token as RFC 6750 spells it (a JWT is base64url parts and dots); anything else would be
# refused by requests with the header's value, token included, in the exception's message.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class BadToken(ValueError):
    """The token given cannot be sent as a header; the message never contains it."""


class ApiUnreachable(Exception):
    """No answer at all from the API (refused, DNS, timeout): the CLI exits 2 with one line."""


class ApiError(Exception):
    """An HTTP error answer: `detail` is the API's own message (FastAPI's `detail`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.detail = message

    def line(self) -> str:
        """One line for the terminal: the 401 says what to do; others give the API's detail."""
        return UNAUTHORIZED_HINT if self.status == 401 else f"the API answered {self}"


def _session(retry: Retry, pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class BearerAuth(AuthBase):
    """`Authorization: Bearer <token>` on each request of the session it is the `auth` of.

    As a session's `auth` (not a default header), a ~/.netrc entry for the API's host cannot replace
    it; requests drops it on a redirect to another host. Its repr never shows the token.
    """

    def __init__(self, token: str) -> None:
        token = token.strip()  # `$(make -s token ...)` or a file may end with a line break
        if not _TOKEN.fullmatch(token):
            raise BadToken(
                "the token (--token or IMAGE_UPLOADS_TOKEN) is not a bearer token: "
                "it has spaces, line breaks or other characters a token cannot have"
            )
        self._value = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<token>)"


def _member_path(dataset: int, sub: str) -> str:
    return f"/datasets/{dataset}/members/{quote(sub, safe='')}"  # a sub may hold `?`, `#`, `|`, spaces...


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
    def __init__(self, base_url: str, pool_size: int = 10, token: str | None = None) -> None:
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
        if token and token.strip():  # an empty IMAGE_UPLOADS_TOKEN is no token
            self.http.auth = BearerAuth(token)
        # S3 PUTs: the uploader retries them itself, since a retry may need a fresh URL. A session of
        # their own, without the token: a presigned URL is its own authorization, and S3 would refuse
        # a request that carries both.
        self.s3 = _session(Retry(total=0, raise_on_status=False), pool_size)
        self._limits: Limits | None = None

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.http.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base} ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response

    def limits(self) -> Limits:
        """The API's upload rules (`GET /limits`, public), asked once per run and kept."""
        if self._limits is None:
            try:
                response = self._call("GET", "/limits")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                raise ApiError(
                    404, "this API does not publish its upload rules (GET /limits): update it"
                ) from None
            try:
                self._limits = Limits.from_json(response.json())
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ApiError(
                    response.status_code,
                    "GET /limits answered rules this CLI does not understand (an older API? update it)",
                ) from None
        return self._limits

    def prepare(self, dataset: int, files: list[dict]) -> list[dict]:
        body = {"files": files}
        return self._call("POST", f"/datasets/{dataset}/images/prepare-upload", json=body).json()["uploads"]

    def lookup(self, dataset: int, hashes: list[str]) -> dict[str, dict]:
        """Which of these hashes an image of the dataset holds: sha256 -> {image_id, status, ...}."""
        body = {"sha256": hashes}
        found = self._call("POST", f"/datasets/{dataset}/images/lookup", json=body).json()["found"]
        return {match["sha256"]: match for match in found}

    def confirm(self, dataset: int, image_ids: list[int]) -> dict:
        body = {"image_ids": image_ids}
        return self._call("POST", f"/datasets/{dataset}/images/confirm-upload", json=body).json()

    def images(self, dataset: int, status: str | None = None) -> Iterator[dict]:
        """Every image of the dataset (optionally of one status), page by page with the cursor."""
        params: dict[str, Any] = {"limit": self.limits().max_page_size}
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

    # -- datasets and members (AuthMode=jwt) ----------------------------------------------------

    def create_dataset(self, dataset: int) -> tuple[dict, bool]:
        """(`{dataset_id, role}`, whether it was created now: False when the caller owned it already)."""
        response = self._call("PUT", f"/datasets/{dataset}")
        return response.json(), response.status_code == 201

    def datasets(self) -> list[dict]:
        return self._call("GET", "/datasets").json()

    def members(self, dataset: int) -> list[dict]:
        return self._call("GET", f"/datasets/{dataset}/members").json()

    def share(self, dataset: int, sub: str, role: str) -> dict:
        return self._call("PUT", _member_path(dataset, sub), json={"role": role}).json()

    def unshare(self, dataset: int, sub: str) -> dict:
        return self._call("DELETE", _member_path(dataset, sub)).json()

    # -- S3 --------------------------------------------------------------------------------------

    def put(
        self, url: str, body: BinaryIO, size: int, mime_type: str, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """PUT to a presigned URL; it signs Content-Type and Content-Length, so both are exact, and the
        checksum the API named in `headers` (its `upload_headers`), so S3 takes no other bytes."""
        headers = {"Content-Type": mime_type, **(headers or {}), "Content-Length": str(size)}
        return self.s3.put(url, data=body, headers=headers, timeout=TIMEOUT)
