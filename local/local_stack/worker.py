"""What runs in a function's worker process, the local twin of a Lambda execution environment.

Standard library only, so that the function's interpreter holds what the function imports and little
else. ``start`` is the process pool's initializer: the function's environment and path are in place before
its handler is imported, once per process (the cold start); ``invoke`` then runs one event at a time,
warm. Only JSON text and plain dicts go back: an exception may not unpickle in the stack (its class lives
in the function's code), and Lambda itself returns JSON.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_handler: Any = None
_init_error: BaseException | None = None
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers use."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def start(environment: dict[str, str], paths: list[str], handler: str, stdout_to_stderr: bool) -> None:
    """The process pool's initializer: the function's environment and sys.path, then its handler's import."""
    global _handler, _init_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the stack, which ends its workers
    # A stack killed without ending its workers would leave them waiting for work forever.
    threading.Thread(target=_exit_with_the_stack, daemon=True).start()
    if stdout_to_stderr:  # `invoke`: the stack's stdout carries the result only
        os.dup2(2, 1)
    os.environ.pop("AWS_PROFILE", None)  # a profile missing here would break boto3
    os.environ.update(environment)
    sys.path[:0] = paths
    module, _, attribute = handler.rpartition(".")
    try:
        _handler = getattr(importlib.import_module(module), attribute)
    except BaseException as error:  # reported by every invocation, as Lambda reports an init error
        _init_error = error


def _exit_with_the_stack() -> None:
    multiprocessing.parent_process().join()  # type: ignore[union-attr]
    os._exit(1)


def invoke(event: Any, context: LambdaContext) -> tuple[dict[str, Any] | None, str | None]:
    """(None, the result as JSON) or (the error Lambda reports, None)."""
    try:
        if _init_error is not None:
            raise _init_error
        return None, json.dumps(_handler(event, context), default=json_default)
    except BaseException as error:  # SystemExit too: the worker outlives a handler's exit()
        return error_payload(error, context.aws_request_id), None


def json_default(value: Any) -> Any:
    # The Python runtime serialises Decimal (from DynamoDB) instead of failing.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """What the Python runtime reports for an unhandled exception (the function's own frames only)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_PACKAGE_DIR)]
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }
