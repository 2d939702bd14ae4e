"""Structured logs and EMF metrics, as CloudWatch would read them from stdout."""

import io
import json

import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file


@pytest.fixture(autouse=True)
def log_stream(aws, monkeypatch):
    """The JSON log lines (Powertools' handler keeps the stdout it saw at import)."""
    from uploads_core.telemetry import logger, metrics

    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    # Each function has its own process in Lambda; here they share one, and Powertools' metrics keep
    # the service name of whichever function's test ran first: the API's, as in its own process.
    monkeypatch.setattr(metrics.provider, "service", "images-api")
    return stream


def emitted(capsys) -> list[dict]:
    import uploads_core.telemetry

    stream = uploads_core.telemetry.logger.registered_handler.stream
    text = capsys.readouterr().out + stream.getvalue()
    stream.seek(0)
    stream.truncate()
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def metric_values(lines: list[dict], name: str) -> list[tuple[float, dict]]:
    found = []
    for line in lines:
        aws = line.get("_aws")
        if not aws:
            continue
        for directive in aws["CloudWatchMetrics"]:
            assert directive["Namespace"] == "ImageUploads"
            if name in [m["Name"] for m in directive["Metrics"]]:
                dims = {d: line[d] for group in directive["Dimensions"] for d in group}
                value = line[name]
                found.append((sum(value) if isinstance(value, list) else value, dims))
    return found


def test_prepare_counts_images_and_logs_with_dataset_id_and_correlation_id(api, capsys):
    capsys.readouterr()
    api.prepare(7, [jpeg_file("a.jpg"), jpeg_file("b.jpg")])
    lines = emitted(capsys)

    assert metric_values(lines, "ImagesPrepared") == [(2.0, {"service": "images-api"})]
    log = next(line for line in lines if line.get("message") == "Upload prepared")
    assert log["dataset_id"] == 7
    assert log["image_ids"] == [1, 2]
    assert log["correlation_id"]


def test_image_routes_log_the_image_id_and_state_is_cleared_between_calls(api, capsys, monkeypatch):
    from images_api import logic

    ticket = api.prepare(7, [jpeg_file()]).json["uploads"][0]
    capsys.readouterr()

    def boom(image_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(logic, "get_image", boom)
    api.image("get_image", ticket["image_id"])
    api.list(8)
    lines = [line for line in emitted(capsys) if line.get("level") == "ERROR"]
    assert lines[0]["image_id"] == ticket["image_id"]
    assert "dataset_id" not in lines[0]


def test_rejections_are_counted_by_reason_and_uploads_counted(api, processor, capsys):
    good, bad = sample_images.jpeg(), sample_images.HTML
    tickets = api.prepare(1, [jpeg_file("g.jpg", len(good)), jpeg_file("b.jpg", len(bad))]).json["uploads"]
    capsys.readouterr()

    processor.deliver(processor.put(tickets[0]["s3_key"], good), processor.put(tickets[1]["s3_key"], bad))
    lines = emitted(capsys)

    assert metric_values(lines, "ImagesUploaded")[0][0] == 1.0
    assert metric_values(lines, "ImagesRejected") == [
        (1.0, {"service": "upload-processor", "Reason": "not_an_image"})
    ]
    processed = [line for line in lines if line.get("message") == "Processed"]
    assert [(p["image_id"], p["dataset_id"], p["result"]) for p in processed] == [
        (tickets[0]["image_id"], 1, "uploaded"),
        (tickets[1]["image_id"], 1, "rejected"),
    ]
    assert all(p["correlation_id"] == "C3D13FE58DE4C810" for p in processed)


def test_cleanup_counts_what_it_removed(api, cleanup, capsys, monkeypatch):
    from datetime import UTC, datetime

    from images_api import logic

    monkeypatch.setattr(logic, "utc_now", lambda: datetime(2026, 1, 1, tzinfo=UTC))
    api.prepare(1, [jpeg_file()] * 3)
    capsys.readouterr()

    cleanup("2026-01-03T00:00:00Z")

    assert metric_values(emitted(capsys), "ImagesCleaned")[0][0] == 3.0


_TRACED_CLEANUP = """
import json, sys
import boto3
from moto import mock_aws
from local_stack.template import Names, create_resources, load_template
from tests.unit.conftest import EVENTS, FakeContext

with mock_aws():
    create_resources(Names(load_template()), boto3.client("dynamodb"), boto3.client("s3"))
    from aws_xray_sdk.core import xray_recorder

    sent = []

    class Daemon:  # what the X-Ray daemon would receive
        ip, port = "127.0.0.1", 2000

        def send_entity(self, entity):
            sent.append(json.loads(entity.serialize()))

        def set_daemon_address(self, address):
            pass

    xray_recorder.configure(emitter=Daemon())
    from upload_cleanup.handler import lambda_handler

    lambda_handler(json.loads((EVENTS / "schedule/scheduled_event.json").read_text()), FakeContext())
patchers = sorted(m for m in sys.modules if m.startswith("aws_xray_sdk.ext."))
print(json.dumps({"sent": sent, "patchers": patchers}))
"""


def test_with_tracing_active_the_handler_and_its_aws_calls_are_traced(template):
    """In a process of its own: the X-Ray SDK's patching is for good."""
    import os
    import subprocess
    import sys

    from local_stack.template import REPO_ROOT, function_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "_X_AMZN"))}
    env |= function_environment(template, "CleanupFunction") | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # What Lambda sets when the function has Tracing: Active.
        "LAMBDA_TASK_ROOT": "/var/task",
        "_X_AMZN_TRACE_ID": "Root=1-6745c0de-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
    }
    env["PYTHONPATH"] = os.pathsep.join(
        str(REPO_ROOT / p) for p in ("layers/common", "functions/cleanup", "local", ".")
    )
    out = subprocess.run(
        [sys.executable, "-c", _TRACED_CLEANUP],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    names = [s["name"] for s in report["sent"]]
    assert "## lambda_handler" in names
    calls = [s for s in report["sent"] if s.get("namespace") == "aws"]
    # The stale-upload query of each shard, through pynamodb: one subsegment each, with its table.
    assert calls
    assert {(s["name"], s["aws"]["operation"]) for s in calls} == {("dynamodb", "Query")}
    assert all(s["aws"]["table_name"] == env["IMAGES_TABLE"] for s in calls)
    # botocore is patched, nothing else the SDK could patch is imported for it.
    assert report["patchers"] == [
        "aws_xray_sdk.ext.boto_utils",
        "aws_xray_sdk.ext.botocore",
        "aws_xray_sdk.ext.botocore.patch",
        "aws_xray_sdk.ext.util",
    ]
