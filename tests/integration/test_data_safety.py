"""The data-safety cases of the design review, over real HTTP on the running local stack (`make run`).

The stack runs each function in its own processes, so an API call and the S3 trigger overlap as
they do on AWS. Every test ends with the whole-store invariants over its datasets.
"""

import time

from tests import sample_images


def prepare(stack, dataset, data: bytes, name="car.jpg", mime="image/jpeg", **params) -> dict:
    files = [{"filename": name, "file_size": len(data), "mime_type": mime}]
    reply = stack.http.post(
        stack.url(f"/datasets/{dataset}/images/prepare-upload"), json={"files": files}, params=params
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["uploads"][0]


def put(stack, ticket, data: bytes, mime="image/jpeg") -> None:
    assert stack.http.put(ticket["upload_url"], data=data, headers={"Content-Type": mime}).status_code == 200


def image(stack, image_id) -> dict:
    return stack.http.get(stack.url(f"/images/{image_id}")).json()


def confirm(stack, dataset, ids) -> dict:
    reply = stack.http.post(stack.url(f"/datasets/{dataset}/images/confirm-upload"), json={"image_ids": ids})
    assert reply.status_code == 200, reply.text
    return reply.json()


def settled(stack, datasets, kept_uploaded=(), timeout=20.0) -> list[dict]:
    """The invariants, once every event of these datasets has been handled (polls with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stack.check_invariants(datasets, kept_uploaded)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def same_size(data: bytes, size: int) -> bytes:
    return data[:size].ljust(size, b" ")


def test_a_corrupt_put_then_a_good_one_through_the_same_url_ends_with_the_good_bytes(stack):
    dataset = stack.dataset()
    # Five images of other bytes each: a dataset keeps one image of the same bytes.
    goods = [sample_images.jpeg(120, 90 + i) for i in range(5)]
    tickets = [prepare(stack, dataset, good, name=f"c{i}.jpg") for i, good in enumerate(goods)]
    for ticket, good in zip(tickets, goods, strict=True):
        put(stack, ticket, good[: len(good) - 300] + b"\0" * 300)
        put(stack, ticket, good)  # well within 0.1 s of the first

    reply = confirm(stack, dataset, [t["image_id"] for t in tickets])

    assert (reply["updated_count"], reply["pending_count"]) == (5, 0)
    for ticket, good in zip(tickets, goods, strict=True):
        link = stack.http.get(stack.url(f"/images/{ticket['image_id']}/download-url")).json()
        assert stack.http.get(link["download_url"]).content == good
    settled(stack, [dataset], kept_uploaded=[t["image_id"] for t in tickets])


def test_a_put_after_uploaded_is_discarded_and_the_verified_bytes_stay(stack):
    dataset = stack.dataset()
    good = sample_images.jpeg(64, 48)
    ticket = prepare(stack, dataset, good)
    put(stack, ticket, good)
    assert confirm(stack, dataset, [ticket["image_id"]])["updated_count"] == 1
    before = image(stack, ticket["image_id"])

    put(stack, ticket, same_size(sample_images.HTML, len(good)))  # the URL is still valid

    settled(stack, [dataset], kept_uploaded=[ticket["image_id"]])  # the later version is gone
    assert image(stack, ticket["image_id"]) == before
    link = stack.http.get(stack.url(f"/images/{ticket['image_id']}/download-url")).json()
    assert stack.http.get(link["download_url"]).content == good


def test_confirm_right_after_a_put_of_html_never_counts_it(stack):
    dataset = stack.dataset()
    html = sample_images.HTML
    ticket = prepare(stack, dataset, html)
    put(stack, ticket, html)

    reply = confirm(stack, dataset, [ticket["image_id"]])

    assert (reply["updated_count"], reply["pending_count"]) == (0, 0)  # it waited for the verdict
    record = image(stack, ticket["image_id"])
    assert (record["status"], record["error_reason"]["code"]) == ("error", "not_an_image")
    settled(stack, [dataset])


def test_patch_cannot_put_an_uploaded_image_back_into_the_cleanup(stack):
    dataset = stack.dataset()
    good = sample_images.jpeg()
    ticket = prepare(stack, dataset, good)
    put(stack, ticket, good)
    confirm(stack, dataset, [ticket["image_id"]])

    reply = stack.http.patch(stack.url(f"/images/{ticket['image_id']}"), json={"status": "uploading"})

    assert reply.status_code == 409
    assert "final" in reply.json()["detail"]
    assert image(stack, ticket["image_id"])["status"] == "uploaded"


def test_upload_urls_live_at_most_an_hour_and_records_know_when_theirs_dies(stack):
    dataset = stack.dataset()
    data = sample_images.jpeg()
    files = [{"filename": "a.jpg", "file_size": len(data), "mime_type": "image/jpeg"}]
    too_long = stack.http.post(
        stack.url(f"/datasets/{dataset}/images/prepare-upload"),
        json={"files": files},
        params={"expires_in": 3601},
    )
    assert too_long.status_code == 422
    ticket = prepare(stack, dataset, data, expires_in=600)
    record = image(stack, ticket["image_id"])
    assert record["upload_expires_at"] > record["created_at"]


def test_a_delete_racing_the_trigger_leaves_nothing(stack):
    dataset = stack.dataset()
    good = sample_images.jpeg(200, 150)
    tickets = [prepare(stack, dataset, good, name=f"d{i}.jpg") for i in range(5)]
    for ticket in tickets:
        put(stack, ticket, good)
        assert stack.http.delete(stack.url(f"/images/{ticket['image_id']}")).status_code == 200

    assert settled(stack, [dataset]) == []


def test_a_cpu_bomb_is_refused_quickly_and_other_uploads_go_on(stack):
    dataset = stack.dataset()
    bomb, good = sample_images.many_scan_jpeg(10_000, 1024, 768), sample_images.jpeg()
    bad_ticket, good_ticket = prepare(stack, dataset, bomb, name="bomb.jpg"), prepare(stack, dataset, good)
    put(stack, bad_ticket, bomb)
    put(stack, good_ticket, good)

    reply = confirm(stack, dataset, [bad_ticket["image_id"], good_ticket["image_id"]])

    assert (reply["updated_count"], reply["pending_count"]) == (1, 0)
    assert image(stack, bad_ticket["image_id"])["error_reason"]["code"] == "too_complex"
    settled(stack, [dataset], kept_uploaded=[good_ticket["image_id"]])


def test_failed_events_are_replayed_from_the_failures_queue(stack, tmp_path):
    """`make replay-failures`: a failure record's event is invoked again, then its message deleted."""
    import json
    import os
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    dataset = stack.dataset()
    good = sample_images.jpeg()
    ticket = prepare(stack, dataset, good)
    s3 = stack.client("s3")
    # An object the trigger never judged: written, then its own event lost (as if every retry failed).
    version = s3.put_object(Bucket=stack.bucket(), Key=ticket["s3_key"] + ".lost", Body=b"x")["VersionId"]
    event = json.loads((ROOT / "events/s3/object_created.json").read_text())
    event["Records"][0]["s3"]["bucket"]["name"] = stack.bucket()
    event["Records"][0]["s3"]["object"].update(
        key=ticket["s3_key"] + ".lost", size=1, versionId=version, sequencer="00" + "F" * 16
    )
    sqs = stack.client("sqs")
    queue = sqs.get_queue_url(QueueName="local-ProcessUploadFailures")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"requestPayload": event}))

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'local'}{os.pathsep}{ROOT / 'ops'}"}
    result = subprocess.run(
        [sys.executable, "-m", "local_stack", "replay-failures", "--aws-port", stack.aws.rsplit(":", 1)[1]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "orphan_deleted" in result.stdout
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    settled(stack, [dataset])  # the lost version is gone
