"""A front on the local AWS endpoint that checks presigned S3 requests as S3 does; moto accepts any.

A request signed in its query string (a presigned URL: ``X-Amz-Algorithm=AWS4-HMAC-SHA256`` and
``X-Amz-Signature``) is checked before moto sees it, in S3's order: the query parameters, the access key,
the expiry (``X-Amz-Date`` + ``X-Amz-Expires``), the signature, then an ``x-amz-checksum-sha256`` of the
body. The signature is computed again by botocore's own signer (not the project's presigner, so each
checks the other) over the request as it arrived: its method, path, query, and the values of the headers
it names in ``X-Amz-SignedHeaders``, with the credentials of its access key and its own ``X-Amz-Date``. A
signed header that is missing or has another value (Content-Type, Content-Length: the HTTP framing makes
it the body's length) therefore fails it. Failures get S3's status and XML error; everything else (calls
signed in headers by the SDKs, CORS preflights even to a presigned URL, moto's /moto-api/) goes to moto
untouched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_input_stream

SECRETS = {"testing": "testing"}  # access key -> secret key: the local stack's fake credentials
MAX_EXPIRES = 604_800  # a week, SigV4's limit
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_MISSING_PARAMETERS = (
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, "
    "X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class S3Front:
    """WSGI middleware around moto's app; ``clock`` gives the time expiry is judged at."""

    def __init__(self, app: WsgiApp, keys: dict[str, str] = SECRETS, clock: Callable[[], float] = time.time):
        self.app, self.secrets, self.clock = app, keys, clock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        presigned = query.get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256" and "X-Amz-Signature" in query
        # A browser's CORS preflight goes to the presigned URL too; S3 answers it from the CORS rules alone.
        if not presigned or environ["REQUEST_METHOD"] == "OPTIONS":
            return self.app(environ, start_response)
        body = get_input_stream(environ).read()
        refusal = self.refusal(environ, query, body)
        if refusal is not None:
            if environ.get("HTTP_ORIGIN"):  # readable by a browser page, as moto's own answers are
                refusal.headers["Access-Control-Allow-Origin"] = "*"
            return refusal(environ, start_response)
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))  # moto reads it
        return self.app(environ, start_response)

    def refusal(self, environ: dict[str, Any], query: dict[str, str], body: bytes) -> Response | None:
        """S3's error response for this presigned request, or None when S3 would take it."""
        try:
            access_key, _, region, service, _ = query["X-Amz-Credential"].split("/")
            signed_at = datetime.strptime(query["X-Amz-Date"], _AMZ_DATE).replace(tzinfo=UTC).timestamp()
            expires = int(query["X-Amz-Expires"])
            signed_headers = query["X-Amz-SignedHeaders"].split(";")
        except (KeyError, ValueError):
            return error(400, "AuthorizationQueryParametersError", _MISSING_PARAMETERS)
        if not 0 < expires <= MAX_EXPIRES:
            message = f"X-Amz-Expires must be less than a week (in seconds) that is; {MAX_EXPIRES}"
            return error(400, "AuthorizationQueryParametersError", message)
        if access_key not in self.secrets:
            message = "The AWS Access Key Id you provided does not exist in our records."
            return error(403, "InvalidAccessKeyId", message, AWSAccessKeyId=access_key)
        now = self.clock()
        if now > signed_at + expires:
            times = {"X-Amz-Expires": expires, "Expires": _iso(signed_at + expires), "ServerTime": _iso(now)}
            return error(403, "AccessDenied", "Request has expired", **times)

        headers = {name: value for name in signed_headers if (value := _header(environ, name)) is not None}
        # The operation's own parameters (versionId...): the signer adds the X-Amz-* ones again.
        params = [(k, v) for k, v in parse_qsl(environ["QUERY_STRING"], True) if not k.startswith("X-Amz-")]
        path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "/").split("?", 1)[0]
        url = f"http://{environ.get('HTTP_HOST', '')}{path}?{urlencode(params)}"
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, headers=headers)
        request.context["timestamp"] = query["X-Amz-Date"]
        token = query.get("X-Amz-Security-Token")
        signer = S3SigV4QueryAuth(
            Credentials(access_key, self.secrets[access_key], token), service, region, expires
        )
        # The steps of signer.add_auth(), which would sign at the current time, not at the request's.
        signer._modify_request_before_signing(request)
        canonical_request = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical_request)
        if not hmac.compare_digest(signer.signature(string_to_sign, request), query["X-Amz-Signature"]):
            return error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
                AWSAccessKeyId=access_key,
                StringToSign=string_to_sign,
                SignatureProvided=query["X-Amz-Signature"],
                CanonicalRequest=canonical_request,
            )

        checksum = _header(environ, "x-amz-checksum-sha256")
        if checksum is not None:
            try:
                digest = base64.b64decode(checksum, validate=True)
            except binascii.Error:
                digest = b""
            if len(digest) != hashlib.sha256().digest_size:
                return error(400, "InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid.")
            if not hmac.compare_digest(digest, hashlib.sha256(body).digest()):
                return error(
                    400, "BadDigest", "The SHA256 you specified did not match the calculated checksum."
                )
        return None


def _header(environ: dict[str, Any], name: str) -> str | None:
    key = name.upper().replace("-", "_")
    return environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}") or None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error(status: int, code: str, message: str, **details: Any) -> Response:
    """S3's error response: ``<Error><Code>…</Code><Message>…</Message>…</Error>``."""
    request_id = secrets.token_hex(8).upper()
    fields = {"Code": code, "Message": message, **details, "RequestId": request_id}
    xml = "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in fields.items())
    headers = {
        "x-amz-request-id": request_id,
        "x-amz-id-2": base64.b64encode(secrets.token_bytes(48)).decode(),
    }
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{xml}</Error>'
    return Response(body, status, headers, content_type="application/xml")
