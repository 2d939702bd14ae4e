"""The S3 trigger and the cleanup job, on the running local stack."""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from tests import sample_images
from tests.integration.conftest import ROOT


def prepare(stack, dataset, name, data, mime):
    files = [{"filename": name, "file_size": len(data), "mime_type": mime}]
    reply = stack.http.post(stack.url(f"/datasets/{dataset}/images/prepare-upload"), json={"files": files})
    assert reply.status_code == 200
    return reply.json()["uploads"][0]


def wait_for(stack, image_id, statuses=("uploaded", "error"), timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = stack.http.get(stack.url(f"/images/{image_id}")).json()
        if image["status"] in statuses or time.monotonic() > deadline:
            return image
        time.sleep(0.1)


def test_a_put_image_becomes_uploaded_with_dimensions_and_a_thumbnail_without_confirm(stack):
    dataset = stack.dataset()
    data = sample_images.jpeg(800, 600)
    ticket = prepare(stack, dataset, "voiture été (1).jpg", data, "image/jpeg")

    started = time.monotonic()
    put = stack.http.put(ticket["upload_url"], data=data, headers={"Content-Type": "image/jpeg"})
    assert put.status_code == 200
    image = wait_for(stack, ticket["image_id"])
    elapsed = time.monotonic() - started

    assert (image["status"], image["width"], image["height"]) == ("uploaded", 800, 600)
    assert elapsed < 10
    (item,) = stack.http.get(stack.url(f"/datasets/{dataset}/images/with-urls")).json()
    thumbnail = stack.http.get(item["thumbnail_url"])
    assert thumbnail.status_code == 200
    assert thumbnail.content[:4] == b"RIFF"


def test_hostile_files_end_in_error_with_their_object_gone(stack):
    dataset = stack.dataset()
    cases = [
        ("page.jpg", sample_images.HTML, "image/jpeg", "not_an_image"),
        ("png.jpg", sample_images.png(), "image/jpeg", "type_mismatch"),
        ("bomb.png", sample_images.png_bomb(), "image/png", "too_many_pixels"),
        ("cut.jpg", sample_images.jpeg(300, 200)[:-500], "image/jpeg", "corrupt"),
    ]
    tickets = []
    for name, data, mime, code in cases:
        ticket = prepare(stack, dataset, name, data, mime)
        assert (
            stack.http.put(ticket["upload_url"], data=data, headers={"Content-Type": mime}).status_code == 200
        )
        tickets.append((ticket, code))

    for ticket, code in tickets:
        image = wait_for(stack, ticket["image_id"])
        assert image["status"] == "error", image
        assert image["error_reason"]["code"] == code
    objects = stack.client("s3").list_objects_v2(Bucket=stack.bucket(), Prefix=f"datasets/{dataset}/")
    assert objects["KeyCount"] == 0


def run_invoke(stack, event: dict, tmp_path) -> subprocess.CompletedProcess:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(event))
    aws_port = stack.aws.rsplit(":", 1)[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local"), "AWS_PORT": aws_port}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "local_stack",
            "invoke",
            "CleanupFunction",
            str(event_file),
            "--aws-port",
            aws_port,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_invoking_the_cleanup_removes_exactly_the_stale_uploads(stack, tmp_path):
    dataset = stack.dataset()
    data = sample_images.png()
    kept = prepare(stack, dataset, "kept.png", data, "image/png")
    stack.http.put(kept["upload_url"], data=data, headers={"Content-Type": "image/png"})
    assert wait_for(stack, kept["image_id"])["status"] == "uploaded"
    stale = [prepare(stack, dataset, f"stale{i}.png", data, "image/png") for i in range(3)]
    event = json.loads((ROOT / "events/schedule/scheduled_event.json").read_text())
    now = datetime.now(UTC)

    # Their URLs die 1 h after now; the cleanup waits 24 h more.
    event["time"] = (now + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
    early = run_invoke(stack, event, tmp_path)
    assert early.returncode == 0, early.stderr
    assert len(stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()) == 4

    event["time"] = (now + timedelta(hours=25, minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    late = run_invoke(stack, event, tmp_path)
    assert late.returncode == 0, late.stderr
    assert json.loads(late.stdout)["removed"] >= 3
    remaining = stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()
    assert [i["id"] for i in remaining] == [kept["image_id"]]
    for ticket in stale:
        assert stack.http.get(stack.url(f"/images/{ticket['image_id']}")).status_code == 404


def test_invoke_exits_non_zero_on_a_bad_event(stack, tmp_path):
    result = run_invoke(stack, {"not": "a scheduled event"}, tmp_path)
    assert result.returncode != 0
    assert result.stderr
