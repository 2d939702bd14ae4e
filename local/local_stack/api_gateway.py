"""The template's HTTP API as a WSGI app: API Gateway (payload format 2.0) in front of its functions.

What the template's HttpApi uses: routes with a method and {param} segments (a literal segment wins over
a parameter), its CorsConfiguration (preflights answered by the gateway, the function's CORS headers
replaced), the JWT authorizer of the routes whose OpenAPI ``security`` names one (AuthMode=jwt), and the
Lambda proxy integration. Dev only: ``first`` (the local OIDC issuer) answers its paths before anything,
``fallback`` (the upload page of web/) what no route takes.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import mimetypes
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from local_stack.auth import CLIENT_ID, Denied, JwtAuthorizer, fetch_json
from local_stack.template import REPO_ROOT, Names, function_events, resources_of_type

log = logging.getLogger("local_stack.api")

MAX_REQUEST_BODY = 10 * 1024 * 1024  # API Gateway's payload quota
MAX_LAMBDA_PAYLOAD = 6 * 1024 * 1024  # a synchronous invocation's event and result
# Content types API Gateway passes as text; any other body arrives base64-encoded.
_TEXT = re.compile(r"text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|graphql|yaml|x-yaml)")

Handler = Callable[[Request], Response | None]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "/images/{image_id}"
    function: str  # its logical id

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        """The route's URL-decoded path parameters in ``raw_path`` (%2F stays in its segment), or None."""
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, raw_path) if method == self.method else None
        return {name: unquote(value) for name, value in found.groupdict().items()} if found else None


def _http_api(names: Names) -> dict[str, Any]:
    """The properties of the template's HttpApi, resolved."""
    apis = resources_of_type(names.template, "AWS::Serverless::HttpApi")
    return names.resolve(next(iter(apis.values()), {}).get("Properties") or {})


def http_routes(template: Mapping[str, Any]) -> list[Route]:
    return [Route(p["Method"].upper(), p["Path"], f) for f, _, p in function_events(template, "HttpApi")]


def route_authorizers(names: Names, fetch: Callable[[str], Any] = fetch_json) -> dict[str, JwtAuthorizer]:
    """Route key -> the authorizer its OpenAPI ``security`` names (resolved: with AuthMode=open, none)."""
    body = _http_api(names).get("DefinitionBody") or {}
    schemes = (body.get("components") or {}).get("securitySchemes") or {}
    authorizers = {
        name: JwtAuthorizer(s["x-amazon-apigateway-authorizer"], fetch) for name, s in schemes.items()
    }
    by_route = {}
    for path, operations in (body.get("paths") or {}).items():
        for method, operation in operations.items():
            for scheme, scopes in [item for r in operation.get("security") or [] for item in r.items()]:
                if scopes:
                    raise ValueError(f"{method.upper()} {path}: scopes are not supported by the local stack")
                by_route[f"{method.upper()} {path}"] = authorizers[scheme]
    return by_route


class HttpApi:
    """Routing, CORS, authorizers and the Lambda proxy integration; ``invoke(function, event)`` runs one."""

    def __init__(
        self,
        routes: list[Route],
        invoke: Callable[[str, dict[str, Any]], Any],
        *,
        cors: Mapping[str, Any] | None = None,  # the HttpApi's CorsConfiguration, resolved
        authorizers: Mapping[str, JwtAuthorizer] | None = None,  # route key -> its authorizer
        account_id: str = "123456789012",
        first: Handler | None = None,
        fallback: Handler | None = None,
    ) -> None:
        # Sorted literal segments first, so that the first route that matches is the most specific one.
        self.routes = sorted(routes, key=lambda r: [s.startswith("{") for s in r.path.split("/")])
        self.invoke, self.cors, self.authorizers = invoke, cors or {}, authorizers or {}
        self.account_id, self.first, self.fallback = account_id, first, fallback

    @classmethod
    def from_template(cls, names: Names, invoke: Any, **kwargs: Any) -> HttpApi:
        """The template's HttpApi, resolved with ``names`` (AuthMode is a parameter)."""
        cors, authorizers = _http_api(names).get("CorsConfiguration"), route_authorizers(names)
        return cls(http_routes(names.template), invoke, cors=cors, authorizers=authorizers, **kwargs)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started, request = time.monotonic(), Request(environ)
        request.max_content_length = MAX_REQUEST_BODY
        request_id = base64.b64encode(os.urandom(11)).decode()  # the shape of API Gateway's ids
        response = (self.first and self.first(request)) or self._respond(request, request_id)
        response.headers["apigw-requestid"] = request_id
        ms = (time.monotonic() - started) * 1000
        log.info("%s %s %d %.0f ms", request.method, request.full_path.rstrip("?"), response.status_code, ms)
        return response(environ, start_response)

    def _respond(self, request: Request, request_id: str) -> Response:
        origin, patterns = request.headers.get("Origin", ""), self.cors.get("AllowOrigins", [])
        allowed = [pattern for pattern in patterns if fnmatch.fnmatchcase(origin.lower(), pattern.lower())]
        headers = (
            {"Access-Control-Allow-Origin": "*" if "*" in allowed else origin} if origin and allowed else {}
        )
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if self.cors and origin and preflight:  # API Gateway answers preflights itself
            if headers:
                headers["Access-Control-Allow-Methods"] = ",".join(self.cors.get("AllowMethods", []))
                headers["Access-Control-Allow-Headers"] = ",".join(self.cors.get("AllowHeaders", []))
                headers["Access-Control-Max-Age"] = str(self.cors.get("MaxAge", 0))
            return Response(status=204, headers=headers)
        response = self._integrate(request, request_id)
        if self.cors:  # API Gateway replaces whatever CORS headers the function sent
            for name in [name for name, _ in response.headers if name.lower().startswith("access-control-")]:
                del response.headers[name]
            if headers:
                headers["Access-Control-Expose-Headers"] = ",".join(self.cors.get("ExposeHeaders", []))
            response.headers.update(headers)
        return response

    def _integrate(self, request: Request, request_id: str) -> Response:
        raw_path = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").split("?")[0]
        for route in self.routes:
            if (params := route.match(request.method, raw_path or request.path)) is not None:
                break
        else:
            return (self.fallback and self.fallback(request)) or message(404, "Not Found")
        authorizer = None
        if route.key in self.authorizers:
            try:
                authorizer = self.authorizers[route.key].authorize(request.headers)
            except Denied as denied:  # the function is not invoked
                log.info("401 %s: %s", route.key, denied)
                return message(401, "Unauthorized")
        try:
            event = self.event(request, route, params, request_id, authorizer)
        except RequestEntityTooLarge:
            return message(413, "Request Entity Too Large")
        if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD:  # base64 adds a third to a binary body
            return message(413, "Request Entity Too Large")
        try:
            return to_response(self.invoke(route.function, event))
        except Exception:
            log.exception("%s failed for %s", route.function, route.key)
            return message(500, "Internal Server Error")

    def event(
        self, request: Request, route: Route, params: dict[str, str], request_id: str, authorizer: Any
    ) -> dict:
        """The payload format 2.0 event API Gateway sends for ``request``."""
        now, body = datetime.now(UTC), request.get_data()
        # Repeated headers and query parameters are joined with commas (werkzeug's server joins headers).
        headers = {name.lower(): value for name, value in request.headers.items()}
        host = headers.get("host", "localhost")
        headers.setdefault("x-forwarded-for", request.remote_addr or "127.0.0.1")
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[-1] if ":" in host else "80")
        headers.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}")
        query = {name: ",".join(values) for name, values in request.args.lists()}
        hostname = host.rsplit(":", 1)[0]
        context = {
            "accountId": self.account_id,
            "apiId": "local",
            **({"authorizer": authorizer} if authorizer else {}),
            "domainName": host,
            "domainPrefix": hostname if re.fullmatch(r"[\d.]+", hostname) else hostname.split(".")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": headers["x-forwarded-for"],
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        }
        event = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": request.path,  # decoded, unlike rawQueryString
            "rawQueryString": request.environ.get("QUERY_STRING", ""),
            "headers": headers,
            "queryStringParameters": query,
            "requestContext": context,
            "pathParameters": params,
            "isBase64Encoded": False,
        }
        event = {key: value for key, value in event.items() if value != {}}  # API Gateway leaves them out
        if body:
            binary = bool(request.mimetype) and not _TEXT.fullmatch(request.mimetype)
            try:
                event["body"] = None if binary else body.decode()
            except UnicodeDecodeError:
                binary = True
            if binary:
                event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        return event


def message(status: int, text: str) -> Response:
    body = json.dumps({"message": text}, separators=(",", ":"))
    return Response(body, status, content_type="application/json")


def to_response(result: Any) -> Response:
    """The HTTP response API Gateway makes of a function's result (payload format 2.0)."""
    serialized = json.dumps(result)
    if len(serialized) > MAX_LAMBDA_PAYLOAD:
        raise ValueError("the result is over Lambda's 6 MB payload limit")
    if not (isinstance(result, dict) and "statusCode" in result):  # the whole result is a JSON body
        return Response(serialized, 200, content_type="application/json")
    headers = {str(name): str(value) for name, value in (result.get("headers") or {}).items()}
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise TypeError(f"body must be a string, not {type(body).__name__}")
    data = base64.b64decode(body, validate=True) if result.get("isBase64Encoded") else body.encode()
    response = Response(data, int(result["statusCode"]), headers)
    if not any(name.lower() == "content-type" for name in headers):
        del response.headers["Content-Type"]  # werkzeug's default: API Gateway adds none
    return response


def static_site(issuer: str | None) -> Handler:
    """GETs of web/ at / and /web/ (the page's relative links work under both), and its /config.json, the
    page's settings a deploy writes beside it: {} (the API is the page's own origin), or with --auth jwt
    the local issuer the page signs in with."""
    root = (REPO_ROOT / "web").resolve()
    config = json.dumps({"oidc": {"issuer": issuer, "client_id": CLIENT_ID}} if issuer else {})

    def serve(request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path.removeprefix("/web") if re.match(r"/web(/|$)", request.path) else request.path
        name, headers = path.lstrip("/") or "index.html", {"X-Content-Type-Options": "nosniff"}
        if name == "config.json":
            return Response(
                config, headers=headers | {"Cache-Control": "no-store"}, mimetype="application/json"
            )
        file = (root / name).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            return None
        headers["Cache-Control"] = "no-cache"
        return Response(file.read_bytes(), headers=headers, mimetype=mimetypes.guess_type(file.name)[0])

    return serve
