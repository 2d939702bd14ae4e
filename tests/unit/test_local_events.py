"""The local stack's triggers: S3 notifications, schedules, Lambda's async retries, and `invoke`."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from local_stack.__main__ import main
from local_stack.async_invoke import Destination, InvokeConfig, event_invoke_config
from local_stack.s3_events import (
    S3Subscription,
    Sequencer,
    notification_configurations,
    s3_record,
    s3_subscriptions,
)
from local_stack.schedules import (
    Scheduler,
    ScheduleSubscription,
    schedule_period,
    schedule_subscriptions,
    scheduled_event,
)
from local_stack.stack import LocalStack, _stamp_s3_events_when_written
from local_stack.template import LocalNames, create_resources, load_template, resolve

ROOT = Path(__file__).parents[2]
EVENTS = ROOT / "events"
BUCKET = "local-images-123456789012-us-east-1"
FAILURES_QUEUE = "local-ProcessUploadFailures"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout}s")
        time.sleep(0.02)
    return result


# --- schedules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
        ("  rate( 2 minutes )", 120),
    ],
)
def test_rate_expressions_give_the_period_in_seconds(expression, seconds):
    assert schedule_period(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 12 * * ? *)", "at(2026-12-01T10:00:00)"])
def test_cron_and_at_expressions_are_recognised_but_not_run_locally(expression):
    assert schedule_period(expression) is None
    sub = ScheduleSubscription("Fn", "Tick", "Schedule", expression, True, "rule")
    assert Scheduler(sub, invoker=None, stopping=threading.Event()).start() is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expression", ["rate(0 minutes)", "rate(5 weeks)", "rate(x hours)", "rate(1.5 hours)", "every hour", ""]
)
def test_invalid_schedule_expressions_are_rejected(expression):
    with pytest.raises(ValueError, match="not a schedule expression"):
        schedule_period(expression)


def test_schedules_come_from_the_template_and_its_parameters(template):
    (sub,) = schedule_subscriptions(template)
    assert (sub.function_id, sub.event_type, sub.expression) == (
        "CleanupFunction",
        "Schedule",
        "rate(1 hour)",
    )
    assert sub.period == 3600
    assert sub.enabled
    assert sub.name == "local-CleanupFunctionSchedule"
    (overridden,) = schedule_subscriptions(template, parameters={"CleanupSchedule": "rate(5 minutes)"})
    assert overridden.period == 300


def test_disabled_schedules_and_inputs_are_read():
    tpl = {
        "Resources": {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Handler": "m.h",
                    "Events": {
                        "Off": {
                            "Type": "Schedule",
                            "Properties": {"Schedule": "rate(1 day)", "Enabled": False},
                        },
                        "V2": {
                            "Type": "ScheduleV2",
                            "Properties": {"ScheduleExpression": "rate(2 hours)", "Input": '{"job": "x"}'},
                        },
                    },
                },
            }
        }
    }
    off, v2 = schedule_subscriptions(tpl)
    assert not off.enabled
    assert (v2.event_type, v2.period, v2.input, v2.enabled) == ("ScheduleV2", 7200, {"job": "x"}, True)


def test_scheduled_event_has_the_eventbridge_shape():
    now = datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC)
    rule = "arn:aws:events:eu-west-1:111122223333:rule/r"
    event = scheduled_event(rule, "eu-west-1", "111122223333", now)
    sample = json.loads((EVENTS / "schedule" / "scheduled_event.json").read_text())
    assert list(event) == list(sample)
    assert event["time"] == "2026-11-26T10:00:00Z"
    assert uuid.UUID(event["id"])
    assert {k: event[k] for k in ("version", "detail-type", "source", "detail")} == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "detail": {},
    }
    assert (event["account"], event["region"], event["resources"]) == ("111122223333", "eu-west-1", [rule])


# --- S3 notifications ------------------------------------------------------------------------------


def test_s3_notification_configuration_comes_from_the_template(template):
    subs = s3_subscriptions(template)
    assert subs == [
        S3Subscription(
            function_id="ProcessUploadFunction",
            event_id="ObjectCreated",
            bucket=BUCKET,
            events=("s3:ObjectCreated:*",),
            filter_rules=(("prefix", "datasets/"),),
        )
    ]
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:local-ProcessUploadFunction-s3-events"
    assert notification_configurations(subs, {"ProcessUploadFunction": queue_arn}) == {
        BUCKET: {
            "QueueConfigurations": [
                {
                    "Id": "ProcessUploadFunctionObjectCreated",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "datasets/"}]}},
                }
            ]
        }
    }


def test_the_s3_events_of_one_bucket_make_one_configuration():
    def function(events: dict) -> dict:
        return {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "m.h", "Events": events}}

    tpl = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "A": function(
                {
                    "Jpegs": {
                        "Type": "S3",
                        "Properties": {
                            "Bucket": {"Ref": "Bucket"},
                            "Events": ["s3:ObjectCreated:Put", "s3:ObjectCreated:Post"],
                            "Filter": {"S3Key": {"Rules": [{"Name": "Suffix", "Value": ".jpg"}]}},
                        },
                    }
                }
            ),
            "B": function(
                {
                    "Gone": {
                        "Type": "S3",
                        "Properties": {"Bucket": {"Ref": "Bucket"}, "Events": "s3:ObjectRemoved:*"},
                    }
                }
            ),
        }
    }
    config = notification_configurations(s3_subscriptions(tpl), {"A": "arn:a", "B": "arn:b"})
    assert config == {
        "local-bucket": {
            "QueueConfigurations": [
                {
                    "Id": "AJpegs",
                    "QueueArn": "arn:a",
                    "Events": ["s3:ObjectCreated:Put", "s3:ObjectCreated:Post"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".jpg"}]}},
                },
                {"Id": "BGone", "QueueArn": "arn:b", "Events": ["s3:ObjectRemoved:*"]},
            ]
        }
    }


def test_sequencers_strictly_increase_with_a_fixed_width_even_if_the_clock_stalls():
    stalled = Sequencer(clock=lambda: 1_700_000_000_000_000_000)
    values = [stalled.next() for _ in range(3)]
    assert values == sorted(values)
    assert len(set(values)) == 3
    real = Sequencer()
    first, second = real.next(), real.next()
    assert first < second
    for value in (*values, first, second):
        assert len(value) == Sequencer.WIDTH
        assert value == value.upper()
        int(value, 16)
    assert abs(int(first, 16) - time.time_ns()) < 10**9  # nanoseconds since the epoch


def moto_record(key: str, event_name: str = "ObjectCreated:Put", **stamped: str) -> dict:
    """A record as moto 5 writes it to SQS (no identity or request fields; '/' encoded).

    ``stamped``: the versionId and sequencer the stack adds to moto's events.
    """
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-26T10:00:02.123Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "FnUploads",
            "bucket": {"name": "b", "arn": "arn:aws:s3:::b"},
            "object": {"key": key, "size": 3, "eTag": "900150983cd24fb0d6963f7d28e17f72", **stamped},
        },
    }


def test_moto_records_are_completed_to_what_s3_sends():
    key = "datasets%2F1%2Fvoiture+%C3%A9t%C3%A9+%281%29.jpg"
    record = s3_record(moto_record(key, versionId="v1", sequencer="0066F1A2B3C4D5E6F7"), Sequencer())
    sample = json.loads((EVENTS / "s3" / "object_created.json").read_text())["Records"][0]
    assert list(record) == list(sample)
    assert list(record["s3"]) == list(sample["s3"])
    assert list(record["s3"]["bucket"]) == list(sample["s3"]["bucket"])
    assert list(record["s3"]["object"]) == list(sample["s3"]["object"])
    obj = record["s3"]["object"]
    assert obj["key"] == "datasets/1/voiture+%C3%A9t%C3%A9+%281%29.jpg"  # S3 keeps the slashes
    assert (obj["size"], obj["eTag"]) == (3, "900150983cd24fb0d6963f7d28e17f72")
    assert (obj["versionId"], obj["sequencer"]) == ("v1", "0066F1A2B3C4D5E6F7")  # kept as stamped
    assert record["eventTime"] == "2026-11-26T10:00:02.123Z"
    assert record["s3"]["configurationId"] == "FnUploads"


def test_records_without_a_stamped_sequencer_get_one():
    record = s3_record(moto_record("a.jpg"), Sequencer(clock=lambda: 255))
    assert record["s3"]["object"]["sequencer"] == "0000000000000000FF"
    assert "versionId" not in record["s3"]["object"]  # an unversioned bucket's events have none


def test_deletion_records_have_no_size_or_etag():
    record = s3_record(moto_record("a.jpg", "ObjectRemoved:Delete"), Sequencer())
    assert set(record["s3"]["object"]) == {"key", "sequencer"}


# --- queues and async invoke configuration ---------------------------------------------------------


def test_a_queue_refs_to_its_url_and_gets_its_arn(template):
    names = LocalNames(template)
    assert (
        names.ref("ProcessUploadFailures")
        == f"https://sqs.us-east-1.amazonaws.com/123456789012/{FAILURES_QUEUE}"
    )
    arn = f"arn:aws:sqs:us-east-1:123456789012:{FAILURES_QUEUE}"
    assert resolve(template, {"Fn::GetAtt": ["ProcessUploadFailures", "Arn"]}) == arn
    assert resolve(template, {"Fn::GetAtt": ["ProcessUploadFailures", "QueueName"]}) == FAILURES_QUEUE
    assert event_invoke_config(template, "ProcessUploadFunction") == InvokeConfig(2, Destination("SQS", arn))
    assert event_invoke_config(template, "CleanupFunction") == InvokeConfig(2)


def test_create_resources_creates_the_queues_their_ref_and_arn_name(template, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    tpl = {
        **template,
        "Resources": {
            **template["Resources"],
            "Dlq": {"Type": "AWS::SQS::Queue", "Properties": {"FifoQueue": True}},
            "Work": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    "FifoQueue": True,
                    "VisibilityTimeout": 120,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
                        "maxReceiveCount": 3,
                    },
                },
            },
        },
    }
    with mock_aws():
        clients = [boto3.client(service, region_name="us-east-1") for service in ("dynamodb", "s3", "sqs")]
        created = create_resources(tpl, *clients)
        assert create_resources(tpl, *clients) == created  # idempotent
        sqs = clients[2]
        assert created["ProcessUploadFailures"] == FAILURES_QUEUE
        assert (created["Dlq"], created["Work"]) == ("local-Dlq.fifo", "local-Work.fifo")
        url = LocalNames(tpl).ref("ProcessUploadFailures")  # the URL a function would get from !Ref
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"] == resolve(tpl, {"Fn::GetAtt": ["ProcessUploadFailures", "Arn"]})
        assert attributes["MessageRetentionPeriod"] == "1209600"
        work = sqs.get_queue_attributes(QueueUrl=LocalNames(tpl).ref("Work"), AttributeNames=["All"])[
            "Attributes"
        ]
        assert work["VisibilityTimeout"] == "120"
        assert json.loads(work["RedrivePolicy"])["deadLetterTargetArn"].endswith(":local-Dlq.fifo")


# --- the running stack: pollers, retries, schedules ------------------------------------------------

STUB = """
    import json
    import os
    import time

    import boto3

    TICKS = []


    def _append(name, entry):
        with open(os.path.join(os.environ["OUT_DIR"], name), "a") as fh:
            fh.write(json.dumps(entry) + "\\n")


    def record(event, context):
        _append("record.jsonl", {"time": time.time(), "event": event, "request_id": context.aws_request_id})
        return {"ok": True}


    def always_fail(event, context):
        _append("fail.jsonl", {"time": time.time(), "request_id": context.aws_request_id})
        raise ValueError("boom")


    def tick(event, context):
        TICKS.append(event)
        _append("tick.jsonl", {"time": time.time(), "event": event})
        if len(TICKS) == 1:
            raise RuntimeError("the first tick fails")


    def meet(event, context):
        # Waits for another invocation (deadline 10 s): S3 events run concurrently.
        arrivals = os.path.join(os.environ["OUT_DIR"], "arrivals")
        os.makedirs(arrivals, exist_ok=True)
        open(os.path.join(arrivals, context.aws_request_id), "w").close()
        deadline = time.monotonic() + 10
        while len(os.listdir(arrivals)) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no other invocation came")
            time.sleep(0.01)
        _append("meet.jsonl", {"key": event["Records"][0]["s3"]["object"]["key"]})


    def describe(event, context):
        print("printed by the function")
        buckets = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
        return {"buckets": buckets, "event": event}
"""


def stub_template(module: str, out_dir: Path) -> dict:
    def function(handler: str, events: dict | None = None, **props: object) -> dict:
        properties = {"CodeUri": "fn/", "Handler": f"{module}.{handler}", "Runtime": "python3.13", **props}
        return {"Type": "AWS::Serverless::Function", "Properties": {**properties, "Events": events or {}}}

    def s3_event(prefix: str) -> dict:
        return {
            "Type": "S3",
            "Properties": {
                "Bucket": {"Ref": "Bucket"},
                "Events": "s3:ObjectCreated:*",
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": prefix}]}},
            },
        }

    def on_failure(retries: int) -> dict:
        failures = {"Type": "SQS", "Destination": {"Fn::GetAtt": ["Failures", "Arn"]}}
        return {"MaximumRetryAttempts": retries, "DestinationConfig": {"OnFailure": failures}}

    return {
        "Globals": {"Function": {"Timeout": 10, "Environment": {"Variables": {"OUT_DIR": str(out_dir)}}}},
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
            },
            "Failures": {"Type": "AWS::SQS::Queue"},
            "Recorder": function("record", {"Uploads": s3_event("in/")}, EventInvokeConfig=on_failure(2)),
            "Failing": function(
                "always_fail", {"Uploads": s3_event("fail/")}, EventInvokeConfig=on_failure(1)
            ),
            "Ticker": function(
                "tick",
                {"Tick": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}}},
                EventInvokeConfig={"MaximumRetryAttempts": 0},
            ),
            "Describer": function("describe"),
            "Meeter": function(
                "meet", {"Uploads": s3_event("meet/")}, EventInvokeConfig={"MaximumRetryAttempts": 0}
            ),
        },
    }


class Stub:
    def __init__(self, stack: LocalStack, out_dir: Path, template_path: Path, started: float) -> None:
        self.stack = stack
        self.out_dir = out_dir
        self.template_path = template_path
        self.started = started
        self.s3 = stack.client("s3")
        self.sqs = stack.client("sqs")
        self.bucket = stack.resources["Bucket"]

    def calls(self, name: str) -> list[dict]:
        path = self.out_dir / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def stub_stack(tmp_path) -> Iterator[Callable[..., Stub]]:
    """Starts a LocalStack of the stub template (own stack name, so moto's shared state never clashes)."""
    module = f"stub_events_{uuid.uuid4().hex}"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / f"{module}.py").write_text(textwrap.dedent(STUB))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    template = stub_template(module, out_dir)
    template_path = tmp_path / "template.yaml"
    template_path.write_text(json.dumps(template))  # JSON is YAML
    stacks: list[LocalStack] = []

    def start(**options: object) -> Stub:
        stack = LocalStack(
            template,
            api_port=0,
            aws_port=0,
            base_dir=tmp_path,
            stack_name=f"t{uuid.uuid4().hex[:10]}",
            retry_delay=0.1,
            **options,  # type: ignore[arg-type]
        )
        started = time.time()
        stacks.append(stack.start())
        return Stub(stack, out_dir, template_path, started)

    yield start
    for stack in stacks:
        stack.stop()


def test_a_put_invokes_the_function_with_the_s3_event_within_a_second(stub_stack):
    stub = stub_stack()
    stub.s3.put_object(Bucket=stub.bucket, Key="out/ignored.jpg", Body=b"x")  # outside the prefix
    key = "in/voiture été 1.jpg"
    put_at = time.time()
    etag = stub.s3.put_object(Bucket=stub.bucket, Key=key, Body=b"abc")["ETag"]
    (call,) = wait_for(lambda: stub.calls("record"), timeout=5)
    assert call["time"] - put_at < 2.0  # a cold start included: a new worker process imports boto3
    (record,) = call["event"]["Records"]
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == stub.bucket
    obj = record["s3"]["object"]
    assert obj["key"] == "in/voiture+%C3%A9t%C3%A9+1.jpg"
    assert (obj["size"], obj["eTag"]) == (3, etag.strip('"'))
    assert obj["sequencer"] != "617f08299329d189"
    assert len(obj["sequencer"]) == Sequencer.WIDTH
    assert datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() == pytest.approx(
        put_at, abs=2
    )

    put_at = time.time()
    stub.s3.put_object(Bucket=stub.bucket, Key=key, Body=b"abc")  # the same bytes again
    first, second = wait_for(lambda: len(calls := stub.calls("record")) == 2 and calls, timeout=3)
    assert second["time"] - put_at < 1.0  # warm
    assert second["event"]["Records"][0]["s3"]["object"]["key"] == obj["key"]
    assert first["request_id"] != second["request_id"]
    # The versioned bucket's events name their versions; sequencers follow the order of the writes.
    versions = stub.s3.list_object_versions(Bucket=stub.bucket, Prefix="in/")["Versions"]
    (older,) = [v["VersionId"] for v in versions if not v["IsLatest"]]
    (latest,) = [v["VersionId"] for v in versions if v["IsLatest"]]
    sequencers = {
        c["event"]["Records"][0]["s3"]["object"]["versionId"]: c["event"]["Records"][0]["s3"]["object"][
            "sequencer"
        ]
        for c in (first, second)
    }
    assert set(sequencers) == {older, latest}
    assert sequencers[older] < sequencers[latest]


def test_s3_events_are_stamped_with_the_version_and_a_sequencer_when_the_object_is_written(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    _stamp_s3_events_when_written()
    with mock_aws():
        s3, sqs = (boto3.client(service, region_name="us-east-1") for service in ("s3", "sqs"))
        queue_url = sqs.create_queue(QueueName="events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        for bucket in ("versioned", "plain"):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {"QueueArn": queue_arn["QueueArn"], "Events": ["s3:ObjectCreated:*"]}
                    ]
                },
            )
        s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        written = [
            s3.put_object(Bucket=bucket, Key="k", Body=b"x") for bucket in ("versioned", "versioned", "plain")
        ]
        objects = []
        while len(objects) < 3:
            for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]:
                body = json.loads(message["Body"])
                objects.extend(r["s3"]["object"] for r in body.get("Records", []))  # not S3's TestEvent
    objects.sort(key=lambda o: o["sequencer"])  # the order of the writes
    assert [o.get("versionId") for o in objects] == [written[0]["VersionId"], written[1]["VersionId"], None]
    assert all(len(o["sequencer"]) == Sequencer.WIDTH for o in objects)


def test_s3_events_invoke_their_function_concurrently(stub_stack):
    stub = stub_stack()
    stub.s3.put_object(Bucket=stub.bucket, Key="meet/a.jpg", Body=b"a")
    wait_for(lambda: (stub.out_dir / "arrivals").exists(), timeout=5)  # the first one runs, and waits
    stub.s3.put_object(Bucket=stub.bucket, Key="meet/b.jpg", Body=b"b")
    calls = wait_for(lambda: len(calls := stub.calls("meet")) == 2 and calls, timeout=10)
    assert sorted(c["key"] for c in calls) == ["meet/a.jpg", "meet/b.jpg"]


def test_a_failing_function_is_retried_then_its_event_goes_to_the_on_failure_queue(stub_stack, caplog):
    stub = stub_stack()
    stub.s3.put_object(Bucket=stub.bucket, Key="fail/x.jpg", Body=b"x")
    queue_url = stub.sqs.get_queue_url(QueueName=stub.stack.resources["Failures"])["QueueUrl"]

    def receive() -> list[dict]:
        return stub.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])

    (message,) = wait_for(receive, timeout=5)
    attempts = stub.calls("fail")
    assert len(attempts) == 2  # MaximumRetryAttempts: 1
    assert attempts[0]["request_id"] == attempts[1]["request_id"]  # one request id across retries
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["requestId"] == attempts[0]["request_id"]
    assert record["requestContext"]["functionArn"].endswith(":function:Failing:$LATEST")
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "fail/x.jpg"
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert (record["responsePayload"]["errorType"], record["responsePayload"]["errorMessage"]) == (
        "ValueError",
        "boom",
    )
    assert not receive()  # exactly one record
    assert "Failing ObjectCreated:Put s3://" in caplog.text
    assert "attempt 1 of 2, retry in 0.1s" in caplog.text
    assert 'raise ValueError("boom")' in caplog.text  # the traceback is logged


def test_schedules_run_every_period_with_a_scheduled_event_and_survive_errors(stub_stack):
    period = 0.3
    stub = stub_stack(schedule_period=period)
    first, second, third = wait_for(lambda: len(ticks := stub.calls("tick")) >= 3 and ticks[:3], timeout=8)
    assert first["time"] - stub.started >= period * 0.9  # not at start: one period later, like EventBridge
    # The first one raised, and the next ones still come. The first run's cold start (a new worker
    # process) may delay it past the second's time; then runs are a period apart (a busy machine may
    # delay one, never advance it).
    assert period * 0.9 <= third["time"] - second["time"] < period * 4
    event = second["event"]
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    stack_name = stub.stack.names["stack_name"]
    assert event["resources"] == [f"arn:aws:events:us-east-1:123456789012:rule/{stack_name}-TickerTick"]
    assert first["event"]["id"] != event["id"]


def test_stop_ends_the_pollers_and_schedules_promptly(stub_stack):
    stub = stub_stack(schedule_period=60)
    threads = [t for t in threading.enumerate() if t.name.startswith(("s3-events-", "schedule-"))]
    assert {t.name for t in threads} >= {"s3-events-Recorder", "s3-events-Failing", "schedule-TickerTick"}
    stopper = threading.Thread(target=stub.stack.stop)
    stopper.start()
    # Not the ~1 s of a long poll (the servers' own shutdown takes ~0.5 s more, after that).
    wait_for(lambda: not any(t.is_alive() for t in threads), timeout=0.3)
    stopper.join()


def test_the_stacks_own_calls_stay_out_of_moto_recordings(stub_stack, tmp_path, monkeypatch):
    from moto.moto_api import recorder

    monkeypatch.setattr(recorder, "_location", str(tmp_path / "recording"))
    stub = stub_stack()
    aws = stub.stack.aws_endpoint
    requests.post(f"{aws}/moto-api/recorder/start-recording", timeout=5)
    try:
        time.sleep(1.2)  # at least one long poll of each poller
        stub.s3.head_bucket(Bucket=stub.bucket)
    finally:
        requests.post(f"{aws}/moto-api/recorder/stop-recording", timeout=5)
    lines = (tmp_path / "recording").read_text().splitlines()
    assert [json.loads(line)["method"] for line in lines] == ["HEAD"]


# --- `python -m local_stack invoke` ----------------------------------------------------------------


def test_invoke_prints_the_result_of_a_function_run_against_the_running_stack(stub_stack, tmp_path):
    stub = stub_stack()
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"hello": "world"}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local"), "AWS_PORT": str(stub.stack._aws_port)}
    env.pop("AWS_ENDPOINT_URL", None)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "local_stack", "invoke", "Describer", str(event_file)),
            *("--template", str(stub.template_path), "--stack-name", stub.stack.names["stack_name"]),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the result only
    assert result["event"] == {"hello": "world"}
    assert stub.bucket in result["buckets"]  # the function reached the stack's moto
    assert "printed by the function" in done.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def event_file(tmp_path) -> Path:
    path = tmp_path / "event.json"
    path.write_text("{}")
    return path


def test_invoke_with_an_unknown_function_lists_the_template_functions(event_file, capsys):
    assert main(["invoke", "NoSuchFunction", str(event_file), "--aws-port", str(closed_port())]) == 2
    err = capsys.readouterr().err
    assert "no function NoSuchFunction" in err
    assert "ApiFunction, CleanupFunction, ProcessUploadFunction" in err


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read the event file"), ("{nope", "is not JSON")]
)
def test_invoke_refuses_a_missing_or_invalid_event_file(tmp_path, capsys, content, message):
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)
    assert main(["invoke", "CleanupFunction", str(path), "--aws-port", str(closed_port())]) == 2
    assert message in capsys.readouterr().err


def test_invoke_without_a_running_stack_says_so(event_file, capsys, monkeypatch):
    monkeypatch.setenv("AWS_PORT", str(closed_port()))
    assert main(["invoke", "CleanupFunction", str(event_file)]) == 3
    captured = capsys.readouterr()
    assert "no local stack at http://127.0.0.1:" in captured.err
    assert "make run" in captured.err
    assert captured.out == ""


def test_invoke_exits_1_with_the_traceback_when_the_function_raises(stub_stack, event_file, capsys):
    stub = stub_stack()
    argv = ["invoke", "Failing", str(event_file), "--template", str(stub.template_path)]
    assert main([*argv, "--aws-port", str(stub.stack._aws_port)]) == 1
    captured = capsys.readouterr()
    assert "Failing raised ValueError: boom" in captured.err
    assert "Traceback" in captured.err
    assert captured.out == ""


# --- `python -m local_stack replay-failures` -------------------------------------------------------


def failure_record(key: str) -> str:
    """An OnFailure invocation record as the stack sends it, abridged."""
    event = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]}
    return json.dumps({"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": event})


@pytest.fixture
def failures(stub_stack) -> Callable[..., tuple[list[str], int]]:
    """Puts messages in the stub's OnFailure queue, then runs `replay-failures` with the given options;
    returns the bodies left in the queue and the exit status."""
    stub = stub_stack()
    queue_url = stub.sqs.get_queue_url(QueueName=stub.stack.resources["Failures"])["QueueUrl"]

    def replay(bodies: list[str], *options: str) -> tuple[list[str], int]:
        for body in bodies:
            stub.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        stack = ["--template", str(stub.template_path), "--stack-name", stub.stack.names["stack_name"]]
        status = main(["replay-failures", *stack, "--aws-port", str(stub.stack._aws_port), *options])
        left = stub.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return sorted(m["Body"] for m in left.get("Messages", [])), status

    replay.stub = stub  # type: ignore[attr-defined]
    return replay


def test_replay_failures_invokes_each_event_again_and_deletes_its_message(failures, capsys):
    assert failures([failure_record("in/a.jpg"), failure_record("in/b.jpg")], "--function", "Recorder") == (
        [],
        0,
    )
    calls = failures.stub.calls("record")
    keys = sorted(c["event"]["Records"][0]["s3"]["object"]["key"] for c in calls)
    assert keys == ["in/a.jpg", "in/b.jpg"]
    out = capsys.readouterr().out
    assert 'replayed s3://b/in/a.jpg: {"ok": true}' in out
    assert "2 replayed, 0 failed, 0 malformed (kept)" in out


def test_replay_failures_keeps_the_messages_of_failed_and_malformed_events(failures, capsys):
    bodies = [failure_record("fail/a.jpg"), "not a record"]
    assert failures(bodies, "--function", "Failing") == (sorted(bodies), 1)
    assert len(failures.stub.calls("fail")) == 1  # replayed once, synchronously: no retries
    out = capsys.readouterr().out
    assert "not replayed s3://b/fail/a.jpg: ValueError: boom" in out
    assert "malformed message" in out


def test_replay_failures_dry_run_changes_nothing(failures, capsys):
    bodies = [failure_record("in/a.jpg")]
    assert failures(bodies, "--function", "Recorder", "--dry-run") == (bodies, 0)
    assert failures.stub.calls("record") == []
    assert "would replay s3://b/in/a.jpg" in capsys.readouterr().out


def test_replay_failures_needs_a_function_with_an_sqs_on_failure_destination(failures, capsys):
    assert failures([], "--function", "Describer") == ([], 2)
    assert "Describer has no SQS OnFailure destination" in capsys.readouterr().err
