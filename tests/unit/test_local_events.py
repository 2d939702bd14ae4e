"""The local stack's triggers without servers: schedules, S3 notifications and records, Lambda's async
configuration, and the `invoke` command's refusals. The running triggers are tested in
tests/integration/test_local_stack.py."""

import json
import re
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local_stack.__main__ import main
from local_stack.template import Names, create_resources, load_template
from local_stack.triggers import (
    _S3_TARGETS,
    S3Events,
    Sequencer,
    invoke_config,
    route_s3_events,
    schedule_period,
    scheduled_event,
    schedules,
)

EVENTS = Path(__file__).parents[2] / "events"
BUCKET = "local-images-123456789012-us-east-1"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture
def fake_aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield lambda service: boto3.client(service, region_name="us-east-1")


# --- Schedules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43200),
        ("rate(7 days)", 604800),
        ("  rate( 2 minutes )", 120),
    ],
)
def test_rate_expressions_give_the_period_in_seconds(expression, seconds):
    assert schedule_period(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 12 * * ? *)", "at(2026-12-01T10:00:00)"])
def test_cron_and_at_expressions_are_recognised_but_not_run_locally(expression):
    assert schedule_period(expression) is None


@pytest.mark.parametrize(
    "expression", ["rate(0 minutes)", "rate(5 weeks)", "rate(1.5 hours)", "every hour", ""]
)
def test_invalid_schedule_expressions_are_refused(expression):
    with pytest.raises(ValueError, match="not a schedule expression"):
        schedule_period(expression)


def test_schedules_come_from_the_template_and_its_parameters(template):
    assert schedules(Names(template)) == [
        (
            "CleanupFunction",
            "arn:aws:events:us-east-1:123456789012:rule/local-CleanupFunctionSchedule",
            "rate(1 hour)",
        )
    ]
    ((_, _, expression),) = schedules(Names(template, parameters={"CleanupSchedule": "rate(5 minutes)"}))
    assert expression == "rate(5 minutes)"


def test_the_scheduled_event_has_eventbridges_shape():
    rule = "arn:aws:events:eu-west-1:111122223333:rule/r"
    event = scheduled_event(rule, datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=UTC))
    sample = json.loads((EVENTS / "schedule" / "scheduled_event.json").read_text())
    assert list(event) == list(sample)
    assert uuid.UUID(event["id"])
    assert {k: event[k] for k in ("version", "detail-type", "source", "detail", "time")} == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "detail": {},
        "time": "2026-11-26T10:00:00Z",
    }
    assert (event["account"], event["region"], event["resources"]) == ("111122223333", "eu-west-1", [rule])


# --- S3 notifications, records and sequencers -----------------------------------------------------------


def test_the_buckets_notify_their_functions_as_sam_configures_them(template, fake_aws):
    s3 = fake_aws("s3")
    create_resources(Names(template), fake_aws("dynamodb"), s3)
    events = S3Events(Names(template), s3, invoker=None)  # type: ignore[arg-type]
    try:
        assert events.described == [
            f"s3://{BUCKET} s3:ObjectCreated:* prefix=datasets/ -> ProcessUploadFunction"
        ]
        (config,) = s3.get_bucket_notification_configuration(Bucket=BUCKET)["LambdaFunctionConfigurations"]
        assert config == {
            "Id": "ProcessUploadFunctionObjectCreated",
            "LambdaFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:ProcessUploadFunction",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "datasets/"}]}},
        }
    finally:
        events.close()


def test_sequencers_strictly_increase_with_a_fixed_width_even_if_the_clock_stalls():
    stalled = Sequencer(clock=lambda: 1_700_000_000_000_000_000)
    values = [stalled.next() for _ in range(3)]
    assert values == sorted(set(values))
    real = Sequencer()
    first, second = real.next(), real.next()
    assert first < second
    assert all(len(value) == Sequencer.WIDTH and value == value.upper() for value in (*values, first))
    assert abs(int(first, 16) - time.time_ns()) < 10**9  # nanoseconds since the epoch


def test_the_records_are_what_s3_sends(fake_aws, monkeypatch):
    route_s3_events()
    delivered: list[dict] = []
    monkeypatch.setitem(_S3_TARGETS, "bkt", lambda function, event: delivered.append(event))
    s3 = fake_aws("s3")
    s3.create_bucket(Bucket="bkt")
    s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
    arn = "arn:aws:lambda:us-east-1:123456789012:function:Fn"
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    config = {"Id": "FnUploads", "LambdaFunctionArn": arn, "Events": events}
    s3.put_bucket_notification_configuration(
        Bucket="bkt", NotificationConfiguration={"LambdaFunctionConfigurations": [config]}
    )
    written = s3.put_object(Bucket="bkt", Key="datasets/1/voiture été (1).jpg", Body=b"abc")
    ((record,),) = [event["Records"] for event in delivered]
    s3.delete_object(Bucket="bkt", Key="datasets/1/voiture été (1).jpg", VersionId=written["VersionId"])
    deleted = delivered[-1]["Records"][0]
    sample = json.loads((EVENTS / "s3" / "object_created.json").read_text())["Records"][0]
    assert list(record) == list(sample)
    assert list(record["s3"]) == list(sample["s3"])
    assert list(record["s3"]["bucket"]) == list(sample["s3"]["bucket"])
    assert list(record["s3"]["object"]) == list(sample["s3"]["object"])
    obj = record["s3"]["object"]
    assert obj["key"] == "datasets/1/voiture+%C3%A9t%C3%A9+%281%29.jpg"  # S3 keeps the slashes
    assert (obj["size"], obj["eTag"], obj["versionId"]) == (
        3,
        "900150983cd24fb0d6963f7d28e17f72",
        written["VersionId"],
    )
    assert (record["eventName"], record["s3"]["configurationId"]) == ("ObjectCreated:Put", "FnUploads")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["eventTime"])
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::bkt"
    assert deleted["eventName"].startswith("ObjectRemoved:")
    assert list(deleted["s3"]["object"]) == ["key", "versionId", "sequencer"]  # no size or eTag
    assert deleted["s3"]["object"]["sequencer"] > obj["sequencer"]


def test_moto_hands_s3_events_to_the_stack_of_their_bucket_stamped_when_written(fake_aws, monkeypatch):
    route_s3_events()
    delivered: list[tuple[str, dict]] = []
    monkeypatch.setitem(_S3_TARGETS, "versioned", lambda function, event: delivered.append((function, event)))
    monkeypatch.setitem(_S3_TARGETS, "plain", lambda function, event: delivered.append((function, event)))
    s3 = fake_aws("s3")
    for bucket in ("versioned", "plain", "elsewhere"):
        s3.create_bucket(Bucket=bucket)
        arn = "arn:aws:lambda:us-east-1:123456789012:function:Fn"
        config = {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [config]}
        )
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    written = [
        s3.put_object(Bucket=b, Key="k", Body=b"x") for b in ("versioned", "versioned", "plain", "elsewhere")
    ]
    assert [function for function, _ in delivered] == ["Fn", "Fn", "Fn"]  # no stack for "elsewhere"
    objects = [event["Records"][0]["s3"]["object"] for _, event in delivered]
    assert [o.get("versionId") for o in objects] == [written[0]["VersionId"], written[1]["VersionId"], None]
    assert [o["sequencer"] for o in objects] == sorted(
        o["sequencer"] for o in objects
    )  # the order of the writes
    assert all(len(o["sequencer"]) == Sequencer.WIDTH for o in objects)


def test_the_async_configuration_comes_from_event_invoke_config(template):
    assert invoke_config(Names(template), "ProcessUploadFunction") == (2, "local-ProcessUploadFailures")
    assert invoke_config(Names(template), "CleanupFunction") == (2, None)  # Lambda's default, no destination


# --- `python -m local_stack invoke` refusals (no stack needed) --------------------------------------------


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


def test_replay_failures_needs_a_function_with_an_sqs_on_failure_destination(capsys):
    assert main(["replay-failures", "--function", "CleanupFunction", "--aws-port", str(closed_port())]) == 2
    assert "CleanupFunction has no SQS OnFailure destination" in capsys.readouterr().err
