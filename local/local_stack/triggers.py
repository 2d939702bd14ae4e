"""The template's asynchronous triggers, invoked as Lambda does: S3 events and rate() schedules.

S3 events: each ``Type: S3`` event becomes the bucket's notification to its function, as SAM configures it
(LambdaFunctionConfigurations: moto applies the Events and S3Key rules and builds the records); moto hands
them to the local stack of the bucket instead of its own Lambda, with S3's versionId and a sequencer given
as the object is written, so that sequencers follow the order of the writes. Each event is an invocation of
its own, at once. Schedules: ``rate(...)`` runs every period with EventBridge's Scheduled Event, the first
one a period after start (``cron(...)`` does not run locally).

Both invoke asynchronously, as Lambda does: a failing event is retried MaximumRetryAttempts times (the
function's EventInvokeConfig, 2 by default), ``retry_delay`` seconds apart (minutes in AWS), then its
invocation record goes to the OnFailure SQS queue.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from local_stack.lambda_runtime import LambdaRuntime
from local_stack.template import Names, function_events, function_properties
from local_stack.worker import error_payload

log = logging.getLogger("local_stack.events")

_S3_TARGETS: dict[str, Callable[[str, dict[str, Any]], None]] = {}  # bucket -> (function id, event) -> None


def invoke_config(names: Names, function_id: str) -> tuple[int, str | None]:
    """(MaximumRetryAttempts, the OnFailure queue's name or None) of the function's EventInvokeConfig."""
    config = names.resolve(function_properties(names.template, function_id).get("EventInvokeConfig") or {})
    destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    return int(config.get("MaximumRetryAttempts", 2)), destination and destination.rsplit(":", 1)[1]


@dataclass
class AsyncInvoker:
    """Invokes functions as Lambda handles an asynchronous (``Event``) invocation."""

    runtime: LambdaRuntime
    sqs: Any  # a client of the OnFailure queues
    retry_delay: float
    stopping: threading.Event  # set: no more retries

    def invoke(self, function_id: str, event: Any, description: str) -> None:
        """Run the function with ``event``, retrying on errors, then send the event to its OnFailure queue."""
        retries, queue = invoke_config(self.runtime.names, function_id)
        request_id = str(uuid.uuid4())  # one id across the retries, as in Lambda
        for attempt in range(1, retries + 2):
            started = time.monotonic()
            try:
                self.runtime.invoke(function_id, event, request_id=request_id)
            except Exception as error:
                if self.stopping.is_set():  # the event is lost, as with an ended container
                    log.warning("%s %s dropped: the stack is stopping", function_id, description)
                    return
                retry = f", retry in {self.retry_delay:g}s" if attempt <= retries else ""
                what = f"{function_id} {description} -> {type(error).__name__}: {error}"
                log.error("%s (attempt %d of %d%s)", what, attempt, retries + 1, retry, exc_info=True)
                if not retry and queue:
                    self._send_failure(queue, function_id, request_id, attempt, event, error)
                elif retry and self.stopping.wait(self.retry_delay):
                    return
            else:
                ms = (time.monotonic() - started) * 1000
                return log.info("%s %s -> ok in %.0f ms", function_id, description, ms)

    def _send_failure(
        self, queue: str, function_id: str, request_id: str, attempts: int, event: Any, error: Exception
    ) -> None:
        record = {  # Lambda's invocation record, version 1.0
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{self.runtime.names.arn(function_id)}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            # A FunctionError carries what the function's worker reported.
            "responsePayload": getattr(error, "payload", None) or error_payload(error, request_id),
        }
        try:
            url = self.sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))
            log.info("RetriesExhausted record sent to %s", queue)
        except Exception:
            log.exception("could not send the RetriesExhausted record to %s", queue)


# --- S3 events ----------------------------------------------------------------------------------------


class Sequencer:
    """S3's ``sequencer``: nanoseconds since the epoch, each one above the last, as fixed-width hex."""

    WIDTH = 18  # as long as S3's, e.g. "0055AED6DCD90281E5"

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock, self._last, self._lock = clock, 0, threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._clock(), self._last + 1)
            return f"{self._last:0{self.WIDTH}X}"


SEQUENCER = Sequencer()  # one per process, like moto's state


@functools.cache  # moto is patched once per process
def route_s3_events() -> None:
    """Moto's S3 events to Lambda go to the local stack of their bucket, each record written as S3 writes
    it, with the object's versionId and a sequencer given as the object is written (the writes' order)."""
    from moto.core.utils import iso_8601_datetime_with_milliseconds
    from moto.s3 import notifications

    def s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        # S3 form-encodes the key (a space is "+") but keeps its slashes.
        obj: dict[str, Any] = {"key": quote_plus(key.name, safe="/")}
        if event_name.startswith("s3:ObjectCreated"):  # a deletion has no size and no eTag
            obj |= {"size": key.size, "eTag": key.etag.strip('"')}
        obj |= {"versionId": key.version_id} if bucket.is_versioned else {}
        ids = {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex}
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": bucket.region_name,
            "eventTime": iso_8601_datetime_with_milliseconds(),
            "eventName": event_name.removeprefix("s3:"),
            "userIdentity": {"principalId": "AWS:AIDALOCALSTACKUSER"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": ids,
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": notification_id,
                "bucket": {
                    "name": bucket.name,
                    "ownerIdentity": {"principalId": "A1LOCALSTACKOWNER"},
                    "arn": f"arn:aws:s3:::{bucket.name}",
                },
                "object": obj | {"sequencer": SEQUENCER.next()},
            },
        }
        return {"Records": [record]}

    def deliver(account_id: str, event: dict[str, Any], function_arn: str, region: str) -> None:
        if target := _S3_TARGETS.get(event["Records"][0]["s3"]["bucket"]["name"]):
            target(function_arn.rsplit(":", 1)[1], event)

    notifications._get_s3_event, notifications._invoke_awslambda = s3_event, deliver


class S3Events:
    """The notifications of the template's ``Type: S3`` events; ``close()`` stops their deliveries."""

    def __init__(self, names: Names, s3: Any, invoker: AsyncInvoker) -> None:
        configurations, self.described = {}, []
        for function_id, event_id, props in function_events(names.template, "S3"):
            props, arn = names.resolve(props), names.arn(function_id)
            events = [props["Events"]] if isinstance(props["Events"], str) else props["Events"]
            rules = props.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            rules = [{"Name": r["Name"].lower(), "Value": r["Value"]} for r in rules]  # moto takes lower case
            config = {"Id": f"{function_id}{event_id}", "LambdaFunctionArn": arn, "Events": events}
            config |= {"Filter": {"Key": {"FilterRules": rules}}} if rules else {}
            configurations.setdefault(props["Bucket"], []).append(config)
            filters = "".join(f" {rule['Name']}={rule['Value']}" for rule in rules)
            self.described.append(f"s3://{props['Bucket']} {','.join(events)}{filters} -> {function_id}")
        self.invoker, self.buckets = invoker, list(configurations)
        self._events = ThreadPoolExecutor(32, thread_name_prefix="s3-event")  # each event invokes at once
        for bucket, lambdas in configurations.items():  # one call per bucket: it replaces its configuration
            notification = {"LambdaFunctionConfigurations": lambdas}
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=notification)
            _S3_TARGETS[bucket] = self._deliver

    def _deliver(self, function_id: str, event: dict[str, Any]) -> None:
        (record,) = event["Records"]
        where = f"s3://{record['s3']['bucket']['name']}/{record['s3']['object']['key']}"
        self._events.submit(self.invoker.invoke, function_id, event, f"{record['eventName']} {where}")

    def close(self) -> None:
        for bucket in self.buckets:
            _S3_TARGETS.pop(bucket, None)
        self._events.shutdown(wait=False, cancel_futures=True)  # the running ones end with their workers


# --- Schedules ----------------------------------------------------------------------------------------


def schedule_period(expression: str) -> float | None:
    """Seconds between two runs of ``rate(...)``; None for ``cron(...)`` and ``at(...)`` (not run locally)."""
    if re.fullmatch(r"\s*(cron|at)\(.*\)\s*", expression):
        return None
    match = re.fullmatch(r"\s*rate\(\s*([1-9]\d*)\s+(minute|hour|day)s?\s*\)\s*", expression)
    if not match:
        raise ValueError(f"not a schedule expression: {expression!r}")
    return float(int(match[1]) * {"minute": 60, "hour": 3600, "day": 86400}[match[2]])


def schedules(names: Names) -> list[tuple[str, str, str]]:
    """(function id, rule ARN, expression) of every ``Type: Schedule`` event."""
    # CloudFormation names the rule "<stack>-<FunctionEvent>-<random>"; no random part here.
    rule = f"arn:aws:events:{names.region}:{names.account_id}:rule/{names.stack_name}-"
    events = function_events(names.template, "Schedule")
    return [(f, f"{rule}{f}{e}", names.resolve(p["Schedule"])) for f, e, p in events]


def scheduled_event(rule_arn: str, now: datetime | None = None) -> dict[str, Any]:
    """The event an EventBridge rule's schedule sends to its Lambda target."""
    _, _, _, region, account, _ = rule_arn.split(":")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def run_schedule(
    function_id: str, rule_arn: str, period: float, invoker: AsyncInvoker, stopping: threading.Event
) -> None:
    due = time.monotonic() + period  # the first run is one period after start
    while not stopping.wait(max(0.0, due - time.monotonic())):
        due = time.monotonic() + period  # a slow run never makes a burst of runs
        invoker.invoke(function_id, scheduled_event(rule_arn), rule_arn.rsplit("/", 1)[1])
