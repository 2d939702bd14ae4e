"""Lambda entry point of ApiFunction: one resolver, its routers, and the error shapes."""

from http import HTTPStatus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from images_api.routes import datasets, images
from uploads_core.errors import ConflictError, ImageNotFoundError, InvalidCursorError

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)
app.include_router(datasets.router)
app.include_router(images.router)


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
        [{"loc": list(e["loc"]), "msg": e.get("msg", ""), "type": e["type"]} for e in errors],
    )


@app.exception_handler(ImageNotFoundError)
def _image_not_found(exc: ImageNotFoundError) -> Response:
    return _detail(HTTPStatus.NOT_FOUND, str(exc))


@app.exception_handler(ConflictError)
def _conflict(exc: ConflictError) -> Response:
    return _detail(HTTPStatus.CONFLICT, str(exc))


@app.exception_handler(InvalidCursorError)
def _bad_cursor(exc: InvalidCursorError) -> Response:
    return _detail(HTTPStatus.BAD_REQUEST, f"Invalid cursor: {exc}")


@app.not_found
def _route_not_found(exc: NotFoundError) -> Response:
    return _detail(HTTPStatus.NOT_FOUND, "Not Found")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    # Logged with its traceback; the client sees no internals.
    logger.exception("Unhandled error")
    return _detail(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
