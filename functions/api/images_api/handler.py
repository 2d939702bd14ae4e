"""Lambda entry point of ApiFunction: one resolver, its routers, and the error shapes."""

import functools
import json
import re
from http import HTTPStatus

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from images_api.routes import datasets, images, limits, members
from uploads_core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidCursorError,
    ResourceNotFoundError,
    UnauthenticatedError,
)
from uploads_core.models import SUB_PATTERN
from uploads_core.telemetry import logger, metrics, traced


class UnreadableJson(ValueError):
    """Well-formed JSON that Python's parser refuses: too deeply nested, or a huge integer."""


def _read_json(body: str) -> object:
    try:
        return json.loads(body)
    except RecursionError:
        raise UnreadableJson("nested too deeply") from None
    except json.JSONDecodeError:
        raise  # Powertools reports it as a validation error (400 below)
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise UnreadableJson(str(exc).split(";")[0]) from None


_ROUTERS = (datasets.router, images.router, members.router, limits.router)  # limits: public, like /docs
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_read_json)
for _router in _ROUTERS:
    app.include_router(_router)


@functools.cache
def _swagger() -> APIGatewayHttpResolver:
    """A resolver with the same routes and Powertools' Swagger UI, made on the first GET /docs:
    `enable_swagger` imports Powertools' OpenAPI models (~170 ms), which no other route needs, so
    calling it on `app` would put them in every cold start."""
    docs = APIGatewayHttpResolver(enable_validation=True)
    for router in _ROUTERS:
        docs.include_router(router)
        router.api_resolver = app  # include_router points the router's request state at `docs`
    docs.enable_swagger(path="/docs", title="Image uploads API", version="1.0.0")
    return docs


@app.get("/docs", include_in_schema=False)
def swagger_ui():
    reply = _swagger().resolve(app.current_event.raw_event, app.lambda_context)
    return Response(status_code=reply["statusCode"], body=reply["body"], headers=reply["headers"])


@app.get("/openapi.json", include_in_schema=False)
def openapi_document():  # no return annotation: it would become a response schema
    return Response(
        status_code=HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(title="Image uploads API", version="1.0.0"),
    )


def _detail(status: HTTPStatus, detail: object) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"detail": detail})


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _detail(HTTPStatus.BAD_REQUEST, "Malformed JSON body")
    # FastAPI's shape; `input` is left out so a huge or hostile body is never echoed back.
    return _detail(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        [{"loc": list(e["loc"]), "msg": _message(e), "type": e["type"]} for e in errors],
    )


def _message(error: dict) -> str:
    message = error.get("msg", "")
    if list(error["loc"]) == ["query", "skip"] and error["type"] == "less_than_equal":
        message += ": page deeper with `cursor` (the X-Next-Cursor header of the previous page)"
    return message


@app.exception_handler(UnreadableJson)
def _unreadable_json(exc: UnreadableJson) -> Response:
    return _detail(HTTPStatus.BAD_REQUEST, f"Malformed JSON body: {exc}")


_NOT_JSON = "Send the body as JSON with Content-Type: application/json"


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_type(exc: RequestUnsupportedContentType) -> Response:
    return _detail(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, _NOT_JSON)


def _declares_other_than_json(event: dict) -> bool:
    """A body sent as form or multipart data, which Powertools would try to parse as such."""
    media = (event.get("headers") or {}).get("content-type", "").split(";")[0].strip().lower()
    return (
        bool(event.get("body"))
        and bool(media)
        and media != "application/json"
        and not media.endswith("+json")
    )


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(exc: UnicodeDecodeError) -> Response:
    return _detail(HTTPStatus.BAD_REQUEST, "Malformed JSON body: not UTF-8")


@app.exception_handler(ResourceNotFoundError)
def _not_found(exc: ResourceNotFoundError) -> Response:
    return _detail(HTTPStatus.NOT_FOUND, str(exc))


@app.exception_handler(ForbiddenError)
def _forbidden(exc: ForbiddenError) -> Response:
    return _detail(HTTPStatus.FORBIDDEN, str(exc))


@app.exception_handler(UnauthenticatedError)
def _unauthenticated(exc: UnauthenticatedError) -> Response:
    # API Gateway's own answer to a missing or bad token.
    return Response(
        status_code=HTTPStatus.UNAUTHORIZED,
        content_type=content_types.APPLICATION_JSON,
        body={"message": "Unauthorized"},
    )


@app.exception_handler(ConflictError)
def _conflict(exc: ConflictError) -> Response:
    return _detail(HTTPStatus.CONFLICT, str(exc))


@app.exception_handler(InvalidCursorError)
def _bad_cursor(exc: InvalidCursorError) -> Response:
    return _detail(HTTPStatus.BAD_REQUEST, f"Invalid cursor: {exc}")


@app.not_found
def _route_not_found(exc: NotFoundError) -> Response:
    # API Gateway matched one of our routes, yet the resolver did not: a path parameter holds
    # characters the parameter cannot have (`/images/£`). That is invalid input, not a missing route.
    event = app.current_event.raw_event
    parameters = event.get("pathParameters") or {}
    if event.get("routeKey", "$default") != "$default" and parameters:
        wrong = {name: value for name, value in parameters.items() if not _routable(name, value)}
        return _detail(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            [
                {"loc": ["path", name], "msg": msg, "type": kind}
                for name in sorted(wrong or parameters)
                for msg, kind in [_PATH_ERRORS.get(name, _NOT_AN_ID)]
            ],
        )
    return _detail(HTTPStatus.NOT_FOUND, "Not Found")


_NOT_AN_ID = ("Input should be a positive integer", "int_parsing")
_PATH_ERRORS = {"sub": (f"String should match pattern '{SUB_PATTERN}'", "string_pattern_mismatch")}


def _routable(name: str, value: str) -> bool:
    return bool(re.fullmatch(SUB_PATTERN, value)) if name == "sub" else value.isascii() and value.isdigit()


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    # Logged with its traceback; the client sees no internals.
    logger.exception("Unhandled error")
    return _detail(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if _declares_other_than_json(event):
        return {
            "statusCode": HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": json.dumps({"detail": _NOT_JSON}, separators=(",", ":")),  # as Powertools writes bodies
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)
