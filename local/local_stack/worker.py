"""What runs inside a function's worker process (the local twin of a Lambda execution environment).

Standard library only, so that a function's interpreter holds what the function imports and little
else. ``start`` is the process pool's initializer: the function's environment and path are in place
before its handler is imported, once per process (cold start); ``invoke`` then runs one event at a
time, warm. Only JSON text and plain dicts go back to the stack: an exception object may not unpickle
there (its class lives in the function's code), and Lambda itself returns JSON.
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
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_handler: Callable[[Any, Any], Any] | None = None
_init_error: BaseException | None = None
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers actually use."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def start(environment: dict[str, str], paths: list[str], handler: str, stdout_to_stderr: bool) -> None:
    """Process-pool initializer: the function's environment and sys.path, then its handler's import."""
    global _handler, _init_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the stack, which stops its workers
    # A stack killed without stopping its workers leaves them waiting on queues it can no longer end.
    threading.Thread(target=_exit_with_the_stack, name="exit-with-the-stack", daemon=True).start()
    if stdout_to_stderr:  # `invoke`: the stack's stdout carries the result only
        os.dup2(2, 1)
    os.environ.pop("AWS_PROFILE", None)  # a profile missing locally would break boto3
    os.environ.update(environment)
    sys.path[:0] = paths
    module_name, _, attribute = handler.replace("/", ".").rpartition(".")
    try:
        _handler = getattr(importlib.import_module(module_name), attribute)
    except BaseException as error:  # reported by every invocation, as Lambda reports an init error
        _init_error = error


def _exit_with_the_stack() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()
        os._exit(1)


def invoke(event: Any, context: LambdaContext) -> tuple[dict[str, Any] | None, str | None]:
    """(None, the result as JSON) or (the error payload Lambda reports, None)."""
    try:
        if _init_error is not None:
            raise _init_error
        assert _handler is not None
        return None, json.dumps(_handler(event, context), default=json_default)
    except BaseException as error:  # SystemExit included: the worker outlives a handler's exit()
        return error_payload(error, context.aws_request_id), None


def json_default(value: Any) -> Any:
    # The Python runtime serialises Decimal (e.g. from DynamoDB) instead of failing.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def error_payload(error: BaseException, request_id: str) -> dict[str, Any]:
    """What the Python runtime reports for an unhandled exception (the function's frames only)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_PACKAGE_DIR)]
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }
