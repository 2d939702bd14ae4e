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

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from local_stack.lambda_runtime import LambdaRuntime
from local_stack.template import Names, function_events, function_properties
from local_stack.worker import error_payload

log = logging.getLogger("local_stack.events")

_RATE = re.compile(r"rate\(\s*(\d+)\s+(minute|hour|day)s?\s*\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
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
                ms, retry = (time.monotonic() - started) * 1000, f", retry in {self.retry_delay:g}s"
                log.error(
                    "%s %s -> %s: %s in %.0f ms (attempt %d of %d%s)",
                    *(function_id, description, type(error).__name__, error, ms, attempt, retries + 1),
                    retry if attempt <= retries else "",
                    exc_info=True,
                )
                if attempt <= retries and self.stopping.wait(self.retry_delay):
                    return
                if attempt > retries and queue:
                    self._send_failure(queue, function_id, request_id, attempt, event, error)
            else:
                log.info(
                    "%s %s -> ok in %.0f ms", function_id, description, (time.monotonic() - started) * 1000
                )
                return

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


def route_s3_events() -> None:
    """Moto's S3 events to Lambda, stamped as the object is written, go to the local stack of their bucket."""
    from moto.s3 import notifications

    if getattr(notifications, "_local_stack", False):
        return
    make_event = notifications._get_s3_event

    def stamped(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = make_event(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            if bucket.is_versioned:
                record["s3"]["object"]["versionId"] = key.version_id
            record["s3"]["object"]["sequencer"] = SEQUENCER.next()
        return event

    def deliver(account_id: str, event: dict[str, Any], function_arn: str, region: str) -> None:
        if target := _S3_TARGETS.get(event["Records"][0]["s3"]["bucket"]["name"]):
            target(function_arn.rsplit(":", 1)[1], event)

    notifications._get_s3_event, notifications._invoke_awslambda = stamped, deliver
    notifications._local_stack = True  # type: ignore[attr-defined]


def s3_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Moto's S3 event record completed to the shape and encoding S3 sends to Lambda."""
    source, bucket = record["s3"]["object"], record["s3"]["bucket"]["name"]
    # S3 form-encodes the key (a space is "+") but keeps its slashes, which moto encodes.
    obj = {"key": quote_plus(unquote_plus(source["key"]), safe="/")}
    kept = ["size", "eTag", "versionId", "sequencer"]
    if record["eventName"].startswith("ObjectRemoved"):  # a deletion has no size and no eTag
        kept = kept[2:]
    obj |= {name: source[name] for name in kept if name in source}
    ids = {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": uuid.uuid4().hex}
    owner = {"principalId": "A1LOCALSTACKOWNER"}
    return {k: record[k] for k in ("eventVersion", "eventSource", "awsRegion", "eventTime", "eventName")} | {
        "userIdentity": {"principalId": "AWS:AIDALOCALSTACKUSER"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": ids,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": record["s3"]["configurationId"],
            "bucket": {"name": bucket, "ownerIdentity": owner, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


class S3Events:
    """The notifications of the template's ``Type: S3`` events; ``close()`` stops their deliveries."""

    def __init__(self, template: Mapping[str, Any], s3: Any, invoker: AsyncInvoker, **names: Any) -> None:
        local, configurations, self.described = Names(template, **names), {}, []
        for function_id, event_id, props in function_events(template, "S3"):
            props, arn = local.resolve(props), local.arn(function_id)
            events = [props["Events"]] if isinstance(props["Events"], str) else props["Events"]
            rules = props.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            rules = [
                {"Name": rule["Name"].lower(), "Value": rule["Value"]} for rule in rules
            ]  # moto: lower case
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
        records = [s3_record(record) for record in event["Records"]]
        described = " ".join(
            f"{r['eventName']} s3://{r['s3']['bucket']['name']}/{r['s3']['object']['key']}" for r in records
        )
        self._events.submit(self.invoker.invoke, function_id, {"Records": records}, described)

    def close(self) -> None:
        for bucket in self.buckets:
            _S3_TARGETS.pop(bucket, None)
        self._events.shutdown(wait=False, cancel_futures=True)  # the running ones end with their workers


# --- Schedules ----------------------------------------------------------------------------------------


def schedule_period(expression: str) -> float | None:
    """Seconds between two runs of ``rate(...)``; None for ``cron(...)`` and ``at(...)`` (not run locally)."""
    if re.fullmatch(r"(cron|at)\(.*\)", expression.strip()):
        return None
    match = _RATE.fullmatch(expression.strip())
    if not match or int(match[1]) < 1:
        raise ValueError(f"not a schedule expression: {expression!r}")
    return float(int(match[1]) * _UNIT_SECONDS[match[2]])


def schedules(template: Mapping[str, Any], **names: Any) -> list[tuple[str, str, str]]:
    """(function id, rule ARN, expression) of every ``Type: Schedule`` event."""
    local = Names(template, **names)
    # CloudFormation names the rule "<stack>-<FunctionEvent>-<random>"; no random part here.
    rule = f"arn:aws:events:{local.region}:{local.account_id}:rule/{local.stack_name}-"
    return [
        (f, f"{rule}{f}{e}", local.resolve(p["Schedule"]))
        for f, e, p in function_events(template, "Schedule")
    ]


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
