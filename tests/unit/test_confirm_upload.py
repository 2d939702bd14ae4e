import threading
import time

import botocore.client

from tests.unit.conftest import jpeg_file


def put(s3, bucket, ticket, body=b"\xff" * 1024, content_type="image/jpeg"):
    s3.put_object(Bucket=bucket, Key=ticket["s3_key"], Body=body, ContentType=content_type)


def test_present_objects_become_uploaded_and_missing_ones_error(api, s3, bucket):
    tickets = api.prepare(1, [jpeg_file("a.jpg"), jpeg_file("b.jpg")]).json["uploads"]
    put(s3, bucket, tickets[0])

    reply = api.confirm(1, [t["image_id"] for t in tickets])

    assert reply.status == 200
    assert reply.json == {
        "message": "Successfully confirmed 1 uploads",
        "updated_count": 1,
        "total_requested": 2,
    }
    statuses = [api.image("get_image", t["image_id"]).json["status"] for t in tickets]
    assert statuses == ["uploaded", "error"]


def test_the_notes_response_shape_for_two_uploads(api, uploaded):
    tickets = uploaded(n=2, confirm=False)
    reply = api.confirm(1, [t["image_id"] for t in tickets])
    assert reply.json == {
        "message": "Successfully confirmed 2 uploads",
        "updated_count": 2,
        "total_requested": 2,
    }


def test_ids_of_other_datasets_or_unknown_are_untouched_and_not_counted(api, s3, bucket, uploaded):
    mine = uploaded(dataset_id=1, confirm=False)[0]
    theirs = uploaded(dataset_id=2, confirm=False)[0]

    reply = api.confirm(1, [mine["image_id"], theirs["image_id"], 999])

    assert reply.json["updated_count"] == 1
    assert reply.json["total_requested"] == 3
    assert api.image("get_image", theirs["image_id"]).json["status"] == "uploading"
    assert api.image("get_image", 999).status == 404


def test_confirming_again_counts_again_and_changes_nothing(api, uploaded):
    ticket = uploaded()[0]
    before = api.image("get_image", ticket["image_id"]).json

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.json["updated_count"] == 1
    assert api.image("get_image", ticket["image_id"]).json == before


def test_object_of_another_size_than_declared_is_an_error(api, s3, bucket):
    ticket = api.prepare(1, [jpeg_file("a.jpg", 1024)]).json["uploads"][0]
    put(s3, bucket, ticket, body=b"\xff" * 10)

    assert api.confirm(1, [ticket["image_id"]]).json["updated_count"] == 0
    assert api.image("get_image", ticket["image_id"]).json["status"] == "error"


def test_object_of_another_type_than_declared_is_an_error(api, s3, bucket):
    ticket = api.prepare(1, [jpeg_file("a.jpg", 1024)]).json["uploads"][0]
    put(s3, bucket, ticket, content_type="text/html")

    assert api.confirm(1, [ticket["image_id"]]).json["updated_count"] == 0
    assert api.image("get_image", ticket["image_id"]).json["status"] == "error"


def test_a_late_upload_turns_an_error_into_uploaded(api, s3, bucket):
    ticket = api.prepare(1, [jpeg_file("a.jpg")]).json["uploads"][0]
    api.confirm(1, [ticket["image_id"]])
    put(s3, bucket, ticket)

    assert api.confirm(1, [ticket["image_id"]]).json["updated_count"] == 1
    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"


def test_one_head_object_per_image_and_they_run_concurrently(api, uploaded, aws_calls, monkeypatch):
    tickets = uploaded(n=8, confirm=False)
    running, peak, lock = 0, 0, threading.Lock()
    original = botocore.client.BaseClient._make_api_call

    def slow_head(self, operation_name, params):
        nonlocal running, peak
        if operation_name != "HeadObject":
            return original(self, operation_name, params)
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        try:
            return original(self, operation_name, params)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", slow_head)
    aws_calls.clear()
    assert api.confirm(1, [t["image_id"] for t in tickets]).json["updated_count"] == 8
    assert aws_calls[("s3", "HeadObject")] == 8
    assert peak > 1


def test_duplicate_ids_are_checked_once(api, uploaded, aws_calls):
    ticket = uploaded(confirm=False)[0]
    aws_calls.clear()
    reply = api.confirm(1, [ticket["image_id"], ticket["image_id"]])
    assert reply.json["total_requested"] == 2
    assert reply.json["updated_count"] == 1
    assert aws_calls[("s3", "HeadObject")] == 1


def test_confirm_validates_its_body(api):
    for body, loc in [
        ({"image_ids": []}, ["body", "image_ids"]),
        ({"image_ids": [0]}, ["body", "image_ids", 0]),
        ({"image_ids": ["1"]}, ["body", "image_ids", 0]),
        ({"image_ids": list(range(1, 1002))}, ["body", "image_ids"]),
        ({}, ["body", "image_ids"]),
    ]:
        reply = api.call("confirm_upload", body=body)
        assert reply.status == 422, body
        assert reply.json["detail"][0]["loc"] == loc
