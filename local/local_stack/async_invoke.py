"""Lambda's asynchronous invocation: retries, then the function's on-failure/on-success destination.

S3 notifications and EventBridge schedules invoke a function asynchronously. Lambda retries a failed
event ``MaximumRetryAttempts`` times (the function's EventInvokeConfig, 2 by default), then sends a
record of it to the OnFailure destination. Lambda waits minutes between attempts; locally the wait
is ``retry_delay`` seconds. Only SQS destinations are delivered locally.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_stack.lambda_runtime import LambdaRuntime
from local_stack.template import LocalNames, function_properties
from local_stack.worker import error_payload

log = logging.getLogger("local_stack.events")

DEFAULT_RETRY_ATTEMPTS = 2
# The service of a destination ARN -> SAM's DestinationConfig Type.
_DESTINATION_TYPES = {"sqs": "SQS", "sns": "SNS", "lambda": "Lambda", "events": "EventBridge", "s3": "S3"}


@dataclass(frozen=True)
class Destination:
    type: str  # SAM's Type: SQS, SNS, Lambda, EventBridge or S3
    arn: str


@dataclass(frozen=True)
class InvokeConfig:
    maximum_retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    on_failure: Destination | None = None
    on_success: Destination | None = None


def event_invoke_config(template: Mapping[str, Any], logical_id: str, **names: Any) -> InvokeConfig:
    """The function's EventInvokeConfig (Globals merged), resolved to local names."""
    props = function_properties(template, logical_id)
    config = LocalNames(template, **names).resolve(props.get("EventInvokeConfig") or {})
    destinations = config.get("DestinationConfig") or {}
    return InvokeConfig(
        maximum_retry_attempts=int(config.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS)),
        on_failure=_destination(destinations.get("OnFailure")),
        on_success=_destination(destinations.get("OnSuccess")),
    )


def _destination(spec: Mapping[str, Any] | None) -> Destination | None:
    if not spec or not spec.get("Destination"):
        # SAM creates the queue/topic itself when Destination is left out; not emulated here.
        return None
    arn = str(spec["Destination"])
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    return Destination(str(spec.get("Type") or _DESTINATION_TYPES.get(service, service)), arn)


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class AsyncInvoker:
    """Invokes functions the way Lambda handles an asynchronous (``Event``) invocation."""

    def __init__(
        self,
        runtime: LambdaRuntime,
        sqs_client: Any,
        *,
        retry_delay: float = 1.0,
        stopping: threading.Event | None = None,
    ) -> None:
        self.runtime = runtime
        self.sqs = sqs_client
        self.retry_delay = retry_delay
        self.stopping = stopping or threading.Event()  # set: no more retries

    def invoke(self, logical_id: str, event: Any, description: str = "") -> bool:
        """Run the function with ``event``, retrying on errors; True when an attempt succeeded."""
        config = event_invoke_config(self.runtime.template, logical_id, **self.runtime.names)
        request_id = str(uuid.uuid4())  # one id across the retries, as in Lambda
        attempts = 1 + max(0, config.maximum_retry_attempts)
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                result = self.runtime.invoke(logical_id, event, request_id=request_id)
            except Exception as error:
                if self.stopping.is_set():  # the event is dropped, as with a dead container
                    log.warning("%s %s dropped: the stack is stopping", logical_id, description)
                    return False
                elapsed_ms = (time.monotonic() - started) * 1000
                retrying = attempt < attempts
                log.error(
                    "%s %s -> %s: %s in %.0f ms (attempt %d of %d%s)",
                    logical_id,
                    description,
                    type(error).__name__,
                    error,
                    elapsed_ms,
                    attempt,
                    attempts,
                    f", retry in {self.retry_delay:g}s" if retrying else "",
                    exc_info=True,
                )
                if not retrying:
                    self._send(
                        config.on_failure,
                        self._record(logical_id, request_id, "RetriesExhausted", attempt, event, error),
                    )
                elif self.stopping.wait(self.retry_delay):
                    return False
                continue
            log.info("%s %s -> ok in %.0f ms", logical_id, description, (time.monotonic() - started) * 1000)
            if config.on_success:
                self._send(
                    config.on_success, self._record(logical_id, request_id, "Success", attempt, event, result)
                )
            return True
        return False

    def _record(
        self, logical_id: str, request_id: str, condition: str, attempts: int, event: Any, outcome: Any
    ) -> dict[str, Any]:
        """The record Lambda sends to a destination (invocation record, version 1.0)."""
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if isinstance(outcome, BaseException):
            response_context["functionError"] = "Unhandled"
            # A FunctionError carries what the function's worker reported.
            outcome = getattr(outcome, "payload", None) or error_payload(outcome, request_id)
        return {
            "version": "1.0",
            "timestamp": _timestamp(),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{self.runtime.function_arn(logical_id)}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": response_context,
            "responsePayload": outcome,
        }

    def _send(self, destination: Destination | None, record: dict[str, Any]) -> None:
        if destination is None:
            return
        condition = record["requestContext"]["condition"]
        if destination.type != "SQS":
            log.warning(
                "%s record not delivered: %s destinations are not emulated locally",
                condition,
                destination.type,
            )
            return
        queue_name = destination.arn.rsplit(":", 1)[-1]
        try:
            url = self.sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))
        except Exception:
            log.exception("could not send the %s record to %s", condition, destination.arn)
            return
        log.info("%s record sent to %s", condition, queue_name)
