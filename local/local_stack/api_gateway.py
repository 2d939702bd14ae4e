"""An API Gateway HTTP API (payload format 2.0) in front of the template's functions.

``HttpApi`` holds the behaviour (routing, CORS, JWT authorizers, event and response translation) and
works on plain ``Request``/``Response`` values; ``ApiServer`` only moves bytes over HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from local_stack.jwt_authorizer import Denied, JwtAuthorizer
from local_stack.worker import json_default

log = logging.getLogger("local_stack.api")

MAX_REQUEST_BODY = 10 * 1024 * 1024  # API Gateway's payload quota
MAX_LAMBDA_PAYLOAD = 6 * 1024 * 1024  # synchronous Lambda invocation limit, request and response
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Content types API Gateway passes as text; everything else arrives base64-encoded.
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|graphql|yaml|x-yaml))$"
)

Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # "/images/{image_id}", "/files/{proxy+}" or "$default"
    function: str  # logical id

    @property
    def key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def segments(self) -> list[str]:
        return self.path.lstrip("/").split("/")

    def specificity(self) -> tuple[Any, ...]:
        # Lower sorts first. Left to right, a literal segment beats {param}, which beats {greedy+};
        # then an explicit method beats ANY; $default comes last.
        if self.path == "$default":
            return (1,)
        ranks = tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in self.segments)
        return (0, ranks, self.method == "ANY")

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        """Path parameters if this route takes ``method`` on the (decoded) ``segments``."""
        if self.method not in ("ANY", method):
            return None
        if self.path == "$default":
            return {}
        params: dict[str, str] = {}
        for i, part in enumerate(self.segments):
            if part.startswith("{") and part.endswith("+}"):
                rest = segments[i:]
                if not rest or rest == [""]:
                    return None
                params[part[1:-2]] = "/".join(rest)
                return params
            if i >= len(segments):
                return None
            if part.startswith("{") and part.endswith("}"):
                if not segments[i]:
                    return None
                params[part[1:-1]] = segments[i]
            elif part != segments[i]:
                return None
        return params if len(segments) == len(self.segments) else None


def match_route(routes: Iterable[Route], method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
    """The most specific route for the request, with its URL-decoded path parameters."""
    # Decode segment by segment so that %2F stays inside its segment.
    segments = [unquote(s) for s in raw_path.lstrip("/").split("/")]
    candidates = []
    for route in routes:
        params = route.match(method.upper(), segments)
        if params is not None:
            candidates.append((route.specificity(), route, params))
    if not candidates:
        return None
    _, route, params = min(candidates, key=lambda c: c[0])
    return route, params


@dataclass
class Request:
    method: str
    target: str  # path and query exactly as sent, e.g. "/images/a%20b?x=1&x=2"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    @property
    def raw_path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def raw_query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ",".join(values) if values else None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def message(cls, status: int, message: str) -> Response:
        body = json.dumps({"message": message}, separators=(",", ":")).encode()
        return cls(status, [("Content-Type", "application/json")], body)


def _is_binary(body: bytes, content_type: str | None) -> bool:
    if content_type and not _TEXT_TYPES.match(content_type.split(";")[0].strip().lower()):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _request_id() -> str:
    return base64.b64encode(os.urandom(11)).decode()  # same shape as API Gateway's ids


def build_event(
    request: Request,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    account_id: str = "123456789012",
    api_id: str = "local",
    request_id: str | None = None,
    now: datetime | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway would send for ``request``.

    ``authorizer``: what the route's authorizer passes on (``{"jwt": {"claims", "scopes"}}``).
    """
    now = now or datetime.now(UTC)
    request_id = request_id or _request_id()
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        name = name.lower()
        if name == "cookie":  # cookies travel in their own field, not as a header
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        else:
            headers[name] = f"{headers[name]},{value}" if name in headers else value
    host = headers.get("host", "localhost")
    headers.setdefault("x-forwarded-for", request.source_ip)
    headers.setdefault("x-forwarded-proto", "http")
    if ":" in host:
        headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[1])
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}")

    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value

    # HTTP APIs hand over the path decoded (rawPath too), but rawQueryString as sent.
    path = unquote(request.raw_path)
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        **({"authorizer": dict(authorizer)} if authorizer else {}),
        "domainName": host,
        "domainPrefix": hostname if re.fullmatch(r"[\d.]+", hostname) else hostname.split(".", 1)[0],
        "http": {
            "method": request.method.upper(),
            "path": path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.key,
        "stage": "$default",
        "time": f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000",
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        if _is_binary(request.body, headers.get("content-type")):
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = request.body.decode("utf-8")
            event["isBase64Encoded"] = False
    else:
        event["isBase64Encoded"] = False
    return event


class InvalidResponse(Exception):
    """The function's result is not something API Gateway can turn into a response."""


def translate_response(result: Any) -> Response:
    """Turn a function's return value into the HTTP response, following the 2.0 format rules."""
    try:
        serialized = json.dumps(result, default=json_default)
    except (TypeError, ValueError) as error:
        raise InvalidResponse(f"the result is not JSON serializable: {error}") from error
    if len(serialized.encode()) > MAX_LAMBDA_PAYLOAD:
        raise InvalidResponse("the response is over Lambda's 6 MB payload limit")
    payload = json.loads(serialized)  # what crosses the Lambda boundary
    if not (isinstance(payload, dict) and "statusCode" in payload):
        # No statusCode: API Gateway takes the whole result as a JSON body.
        return Response(200, [("Content-Type", "application/json")], serialized.encode())

    try:
        status = int(payload["statusCode"])
    except (TypeError, ValueError):
        raise InvalidResponse(f"statusCode {payload['statusCode']!r} is not a number") from None
    if not 100 <= status <= 599:
        raise InvalidResponse(f"statusCode {status} is out of range")
    headers = [(str(k), _header_text(v)) for k, v in (payload.get("headers") or {}).items()]
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), _header_text(v)) for v in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in payload.get("cookies") or [])

    body = payload.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise InvalidResponse(f"body must be a string, got {type(body).__name__}")
    elif payload.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError as error:
            raise InvalidResponse(f"isBase64Encoded but the body is not base64: {error}") from error
    else:
        data = body.encode("utf-8")
    return Response(status, headers, data)


def _header_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass
class HttpApi:
    """Routing, CORS and the Lambda proxy integration of one HTTP API."""

    routes: list[Route]
    invoke: Invoke  # (function logical id, event) -> result
    cors: Mapping[str, Any] | None = None  # CorsConfiguration as in the template, resolved
    account_id: str = "123456789012"
    api_id: str = "local"
    # Dev only: answers requests no route takes (the static upload page) before the 404.
    fallback: Callable[[Request], Response | None] | None = None
    authorizers: Mapping[str, JwtAuthorizer] = field(default_factory=dict)  # route key -> its authorizer
    # Dev only: answers its own paths before anything else, CORS included (the local OIDC issuer).
    reserved: Callable[[Request], Response | None] | None = None

    @classmethod
    def from_routes(cls, routes: Iterable[tuple[str, str, str]], invoke: Invoke, **kwargs: Any) -> HttpApi:
        return cls([Route(m.upper(), p, f) for m, p, f in routes], invoke, **kwargs)

    def handle(self, request: Request) -> Response:
        request_id = _request_id()
        response = (self.reserved and self.reserved(request)) or self._respond(request, request_id)
        response.headers.append(("apigw-requestid", request_id))
        return response

    def _respond(self, request: Request, request_id: str) -> Response:
        origin = request.header("origin")
        if (
            self.cors is not None
            and request.method.upper() == "OPTIONS"
            and origin
            and request.header("access-control-request-method")
        ):
            return Response(204, self._preflight_headers(origin))  # API Gateway answers preflights itself

        response = self._integrate(request, request_id)
        if self.cors is not None:
            # With CORS configured, API Gateway replaces whatever CORS headers the function sent.
            response.headers = [
                (k, v) for k, v in response.headers if not k.lower().startswith("access-control-")
            ]
            if origin:
                response.headers.extend(self._cors_headers(origin))
        return response

    def _integrate(self, request: Request, request_id: str) -> Response:
        matched = match_route(self.routes, request.method, request.raw_path)
        if matched is None:
            fallback = self.fallback(request) if self.fallback else None
            return fallback or Response.message(404, "Not Found")
        route, params = matched
        authorizer = None
        if route.key in self.authorizers:
            try:
                authorizer = self.authorizers[route.key].authorize(request.header)
            except Denied as denied:
                log.info("%s %s: %s", denied.status, route.key, denied)
                return Response.message(denied.status, denied.message)  # the function is not invoked
        event = build_event(
            request,
            route,
            params,
            account_id=self.account_id,
            api_id=self.api_id,
            request_id=request_id,
            authorizer=authorizer,
        )
        if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD:
            log.error("%s: the event is over Lambda's 6 MB payload limit (base64 adds a third)", route.key)
            return Response.message(413, "Request Entity Too Large")
        try:
            result = self.invoke(route.function, event)
            return translate_response(result)
        except InvalidResponse as error:
            log.error("%s returned an invalid response for %s: %s", route.function, route.key, error)
        except Exception:
            log.error("%s raised for %s:\n%s", route.function, route.key, traceback.format_exc())
        return Response.message(500, "Internal Server Error")

    def origin_allowed(self, origin: str) -> bool:
        for allowed in (self.cors or {}).get("AllowOrigins") or []:
            pattern = "^" + ".*".join(re.escape(p) for p in allowed.split("*")) + "$"
            if re.match(pattern, origin, re.IGNORECASE):
                return True
        return False

    def _allow_origin(self, origin: str) -> list[tuple[str, str]]:
        if not self.origin_allowed(origin):
            return []
        if "*" in self.cors["AllowOrigins"] and not self.cors.get("AllowCredentials"):  # type: ignore[index]
            return [("Access-Control-Allow-Origin", "*")]
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]

    def _preflight_headers(self, origin: str) -> list[tuple[str, str]]:
        headers = self._allow_origin(origin)
        if not headers:
            return []
        cors = self.cors or {}
        if cors.get("AllowMethods"):
            headers.append(("Access-Control-Allow-Methods", ",".join(cors["AllowMethods"])))
        if cors.get("AllowHeaders"):
            headers.append(("Access-Control-Allow-Headers", ",".join(cors["AllowHeaders"])))
        if cors.get("MaxAge") is not None:
            headers.append(("Access-Control-Max-Age", str(cors["MaxAge"])))
        if cors.get("AllowCredentials"):
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def _cors_headers(self, origin: str) -> list[tuple[str, str]]:
        headers = self._allow_origin(origin)
        if not headers:
            return []
        cors = self.cors or {}
        if cors.get("ExposeHeaders"):
            headers.append(("Access-Control-Expose-Headers", ",".join(cors["ExposeHeaders"])))
        if cors.get("AllowCredentials"):
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers


class _BodyTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like API Gateway
    server: _Server

    def _serve(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
        except _BodyTooLarge:
            response = Response.message(413, "Request Entity Too Large")
            self.close_connection = True  # the unread body must not be taken for the next request
        except ValueError:
            response = Response.message(400, "Bad Request")
            self.close_connection = True
        else:
            request = Request(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                protocol=self.request_version,
            )
            response = self.server.api.handle(request)
        self._write(response)
        elapsed_ms = (time.monotonic() - started) * 1000
        log.info("%s %s %d %.0f ms", self.command, self.path, response.status, elapsed_ms)

    def __getattr__(self, name: str):
        # Every method reaches the router (TRACE, PROPFIND...): unknown ones get API Gateway's 404,
        # not http.server's HTML 501.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > MAX_REQUEST_BODY:
            raise _BodyTooLarge
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_REQUEST_BODY:
                raise _BodyTooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def version_string(self) -> str:
        return "local_stack"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)  # our own line per request is written in _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: HttpApi


class ApiServer:
    """Serves an ``HttpApi`` on host:port (port 0 picks a free one) from a background thread.

    The port is bound at once; ``api`` may be given later (before ``start()``), once what depends
    on the URL (the local issuer's) is known.
    """

    def __init__(self, api: HttpApi | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server((host, port), _Handler)
        self.api = api
        self._thread: threading.Thread | None = None

    @property
    def api(self) -> HttpApi | None:
        return self._httpd.api

    @api.setter
    def api(self, api: HttpApi | None) -> None:
        self._httpd.api = api  # type: ignore[assignment]

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}"

    def start(self) -> ApiServer:
        # A short poll interval keeps stop() quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="api-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
