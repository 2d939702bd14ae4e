"""S3 event notifications: a bucket notifies a local SQS queue, a poller invokes the function.

For every ``Type: S3`` event of a function, the bucket's notification configuration (in moto) sends
the event's ``Events``, filtered by its ``S3Key`` rules, to one queue per function. A poller thread
long-polls that queue and invokes the function asynchronously (``AsyncInvoker``: retries, on-failure
destination) with ``{"Records": [...]}``, one invocation per message, as S3 invokes Lambda; the
invocations run concurrently.

Moto's records are completed to what S3 sends: the key keeps its slashes (moto's quote_plus encodes
them), the identity, request and owner fields are filled with local values, and each record carries
the ``versionId`` and ``sequencer`` the stack stamps on moto's events as the object is written (see
``stack.py``).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from local_stack.async_invoke import AsyncInvoker
from local_stack.template import (
    LocalNames,
    function_events,
    sqs_queue_name,
)

log = logging.getLogger("local_stack.events")

POLL_SECONDS = 1  # long-poll wait: delivery within ~1 s of a PUT, and stop() within ~1 s
_BATCH = 10  # SQS's maximum per receive
_VISIBILITY_SECONDS = 3600  # longer than any invocation with its retries: no redelivery meanwhile
_LOCAL_PRINCIPAL = "AWS:AIDALOCALSTACKUSER"
_LOCAL_OWNER = "A1LOCALSTACKOWNER"
_WAKE_UP = json.dumps({"Event": "local_stack:WakeUp"})  # ends a long poll at once when stopping


@dataclass(frozen=True)
class S3Subscription:
    """One ``Type: S3`` event of a function."""

    function_id: str
    event_id: str
    bucket: str
    events: tuple[str, ...]  # e.g. ("s3:ObjectCreated:*",)
    filter_rules: tuple[tuple[str, str], ...]  # e.g. (("prefix", "datasets/"),)

    @property
    def configuration_id(self) -> str:
        return f"{self.function_id}{self.event_id}"

    def describe(self) -> str:
        rules = "".join(f" {name}={value}" for name, value in self.filter_rules)
        return f"s3://{self.bucket} {','.join(self.events)}{rules} -> {self.function_id}"


def s3_subscriptions(template: Mapping[str, Any], **names: Any) -> list[S3Subscription]:
    """Every ``Type: S3`` event of the template's functions, resolved to local names."""
    local = LocalNames(template, **names)
    subscriptions = []
    for function_id, event_id, event in function_events(template, "S3"):
        props = local.resolve(event.get("Properties") or {})
        events = props["Events"]
        rules = ((props.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        subscriptions.append(
            S3Subscription(
                function_id=function_id,
                event_id=event_id,
                bucket=str(props["Bucket"]),
                events=(events,) if isinstance(events, str) else tuple(events),
                # S3 takes "prefix"/"suffix" in any case; moto only lower case.
                filter_rules=tuple((str(r["Name"]).lower(), str(r["Value"])) for r in rules),
            )
        )
    return subscriptions


def notification_configurations(
    subscriptions: list[S3Subscription], queue_arns: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Bucket -> PutBucketNotificationConfiguration's NotificationConfiguration.

    ``queue_arns`` maps a function's logical id to the queue its events go to.
    """
    configurations: dict[str, dict[str, Any]] = {}
    for sub in subscriptions:
        queue_config: dict[str, Any] = {
            "Id": sub.configuration_id,
            "QueueArn": queue_arns[sub.function_id],
            "Events": list(sub.events),
        }
        if sub.filter_rules:
            rules = [{"Name": name, "Value": value} for name, value in sub.filter_rules]
            queue_config["Filter"] = {"Key": {"FilterRules": rules}}
        configurations.setdefault(sub.bucket, {"QueueConfigurations": []})["QueueConfigurations"].append(
            queue_config
        )
    return configurations


def notification_queue_name(stack_name: str, function_id: str) -> str:
    return sqs_queue_name(f"{stack_name}-{function_id}-s3-events")


def connect_s3_notifications(
    subscriptions: list[S3Subscription], s3_client: Any, sqs_client: Any, stack_name: str
) -> dict[str, str]:
    """Create a queue per S3-triggered function and point the buckets at them; function id -> queue URL."""
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for function_id in dict.fromkeys(sub.function_id for sub in subscriptions):
        url = sqs_client.create_queue(QueueName=notification_queue_name(stack_name, function_id))["QueueUrl"]
        attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        urls[function_id], arns[function_id] = url, attributes["QueueArn"]
    # One call per bucket: it replaces the bucket's whole configuration.
    for bucket, configuration in notification_configurations(subscriptions, arns).items():
        s3_client.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=configuration
        )
    return urls


class Sequencer:
    """S3's ``sequencer``: orders the events of one key (equal-length hex strings compare as numbers).

    Nanoseconds since the epoch, bumped so that every value is greater than the previous one, as
    fixed-width uppercase hex.
    """

    WIDTH = 18  # as long as S3's, e.g. "0055AED6DCD90281E5"

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._clock(), self._last + 1)
            return f"{self._last:0{self.WIDTH}X}"


SEQUENCER = Sequencer()


def s3_record(record: Mapping[str, Any], sequencer: Sequencer) -> dict[str, Any]:
    """Moto's S3 event record completed to the shape and encoding S3 sends to Lambda."""
    s3 = record["s3"]
    source = s3["object"]
    event_name = str(record.get("eventName", ""))
    # S3 form-encodes the key (space -> "+") but leaves "/" alone; moto encodes it too.
    obj: dict[str, Any] = {"key": quote_plus(unquote_plus(source["key"]), safe="/")}
    if not event_name.startswith("ObjectRemoved"):  # a deletion has neither size nor eTag
        obj.update({k: source[k] for k in ("size", "eTag") if k in source})
    if "versionId" in source:
        obj["versionId"] = source["versionId"]
    obj["sequencer"] = source.get("sequencer") or sequencer.next()  # stamped when written, normally
    bucket = s3["bucket"]
    return {
        "eventVersion": record.get("eventVersion", "2.1"),
        "eventSource": "aws:s3",
        "awsRegion": record["awsRegion"],
        "eventTime": record["eventTime"],
        "eventName": event_name,
        "userIdentity": record.get("userIdentity") or {"principalId": _LOCAL_PRINCIPAL},
        "requestParameters": record.get("requestParameters") or {"sourceIPAddress": "127.0.0.1"},
        "responseElements": record.get("responseElements")
        or {
            "x-amz-request-id": secrets.token_hex(8).upper(),
            "x-amz-id-2": base64.b64encode(secrets.token_bytes(48)).decode(),
        },
        "s3": {
            "s3SchemaVersion": s3.get("s3SchemaVersion", "1.0"),
            "configurationId": s3.get("configurationId", ""),
            "bucket": {
                "name": bucket["name"],
                "ownerIdentity": bucket.get("ownerIdentity") or {"principalId": _LOCAL_OWNER},
                "arn": bucket.get("arn") or f"arn:aws:s3:::{bucket['name']}",
            },
            "object": obj,
        },
    }


class S3EventPoller:
    """Long-polls one function's notification queue and invokes the function per message."""

    def __init__(
        self,
        function_id: str,
        queue_url: str,
        sqs_client: Any,
        invoker: AsyncInvoker,
        sequencer: Sequencer,
        stopping: threading.Event,
    ) -> None:
        self.function_id = function_id
        self.queue_url = queue_url
        self.sqs = sqs_client
        self.invoker = invoker
        self.sequencer = sequencer
        self.stopping = stopping

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"s3-events-{self.function_id}", daemon=True)
        thread.start()
        return thread

    def wake(self) -> None:
        """Answer the current long poll now, so that a stopping poller need not wait for it to end."""
        try:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=_WAKE_UP)
        except Exception:
            log.debug("could not wake the poller of %s", self.function_id, exc_info=True)

    def run(self) -> None:
        # Each event is an invocation of its own, as in Lambda: they run at once, up to the function's
        # concurrency (the runtime has the others wait for a free worker).
        events = ThreadPoolExecutor(_BATCH, thread_name_prefix=f"s3-event-{self.function_id}")
        try:
            while not self.stopping.is_set():
                try:
                    messages = self.sqs.receive_message(
                        QueueUrl=self.queue_url,
                        MaxNumberOfMessages=_BATCH,
                        WaitTimeSeconds=POLL_SECONDS,
                        VisibilityTimeout=_VISIBILITY_SECONDS,
                    ).get("Messages", [])
                except Exception:
                    if self.stopping.is_set():
                        return
                    log.exception("polling %s failed", self.queue_url)
                    self.stopping.wait(POLL_SECONDS)
                    continue
                for message in messages:
                    events.submit(self._deliver, message)
        finally:
            events.shutdown(cancel_futures=True)

    def _deliver(self, message: Mapping[str, Any]) -> None:
        if self.stopping.is_set():
            return
        try:
            self.handle(message["Body"])
        except Exception:  # a malformed notification must not end the poller
            log.exception("%s: could not handle %.200s", self.function_id, message["Body"])
        try:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception:
            log.exception("%s: could not delete a message", self.function_id)

    def handle(self, body: str) -> None:
        try:
            notification = json.loads(body)
        except ValueError:
            log.warning("%s: skipped a message that is not JSON: %.200s", self.function_id, body)
            return
        if notification.get("Event") in ("s3:TestEvent", "local_stack:WakeUp"):  # S3's: sent on configuration
            return
        records = [s3_record(record, self.sequencer) for record in notification.get("Records") or []]
        if not records:
            log.warning("%s: skipped a message without Records: %.200s", self.function_id, body)
            return
        description = " ".join(
            f"{r['eventName']} s3://{r['s3']['bucket']['name']}/{r['s3']['object']['key']}" for r in records
        )
        self.invoker.invoke(self.function_id, {"Records": records}, description)
