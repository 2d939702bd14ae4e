"""CleanupFunction: stale `uploading` records go, with their objects; nothing else does."""

from datetime import UTC, datetime

import pytest

from tests.unit.conftest import jpeg_file

CREATED = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)


@pytest.fixture
def at_creation(monkeypatch):
    """Prepare-upload calls made through this fixture record CREATED as their creation time."""
    from images_api import logic

    monkeypatch.setattr(logic, "utc_now", lambda: CREATED)


def prepare(api, n=1, dataset=1):
    return api.prepare(dataset, [jpeg_file(f"c{i}.jpg", 3) for i in range(n)]).json["uploads"]


def test_uploads_older_than_24_hours_at_event_time_are_removed_with_their_objects(
    api, at_creation, cleanup, s3, bucket
):
    tickets = prepare(api, 3)
    # One client PUT its file but never confirmed (and no trigger ran): the object goes too.
    s3.put_object(Bucket=bucket, Key=tickets[0]["s3_key"], Body=b"abc")

    report = cleanup("2026-11-21T09:00:00Z")  # created + 25 h

    assert report == {"cutoff": "2026-11-20T09:00:00Z", "found": 3, "removed": 3, "kept": 0}
    assert api.list(1).json == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_uploads_younger_than_24_hours_are_kept(api, at_creation, cleanup):
    prepare(api, 2)
    report = cleanup("2026-11-21T07:00:00Z")  # created + 23 h
    assert report["found"] == report["removed"] == 0
    assert len(api.list(1).json) == 2


def test_the_event_time_is_now_so_a_replayed_event_does_the_same(api, at_creation, cleanup):
    prepare(api, 1)
    assert cleanup("2026-11-20T10:00:00Z")["removed"] == 0
    assert len(api.list(1).json) == 1


def test_uploaded_and_error_images_are_never_removed(api, at_creation, cleanup, uploaded):
    done = uploaded(n=1)
    failed = prepare(api, 1)
    api.confirm(1, [failed[0]["image_id"]])  # absent → error
    assert {i["status"] for i in api.list(1).json} == {"uploaded", "error"}

    report = cleanup("2026-12-30T00:00:00Z")

    assert report["found"] == 0
    assert [i["id"] for i in api.list(1).json] == [done[0]["image_id"], failed[0]["image_id"]]


def test_a_late_upload_wins_over_the_cleanup(api, at_creation, cleanup, monkeypatch, s3, bucket):
    from uploads_core import images_table
    from uploads_core.models import ImageStatus

    ticket = prepare(api, 1)[0]
    s3.put_object(Bucket=bucket, Key=ticket["s3_key"], Body=b"abc", ContentType="image/jpeg")
    original = images_table.query_stale_uploads

    def then_uploaded(cutoff):
        for image in original(cutoff):
            # The S3 trigger accepts the upload between the query and the delete.
            images_table.update(
                image, {"status": ImageStatus.UPLOADED}, expected_status=ImageStatus.UPLOADING
            )
            yield image

    monkeypatch.setattr(images_table, "query_stale_uploads", then_uploaded)
    report = cleanup("2026-11-22T00:00:00Z")

    assert (report["found"], report["removed"], report["kept"]) == (1, 0, 1)
    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_pages_through_any_number_of_stale_uploads_without_a_scan(api, at_creation, cleanup, aws_calls):
    prepare(api, 1000, dataset=1)
    prepare(api, 300, dataset=2)
    aws_calls.clear()

    report = cleanup("2026-11-22T00:00:00Z")

    assert report["removed"] == 1300
    assert api.list(1).json == []
    assert api.list(2).json == []
    operations = {op for (service, op) in aws_calls if service == "dynamodb"}
    assert "Scan" not in operations
    assert "Query" in operations
    # Objects go in DeleteObjects batches, not one call per image.
    assert aws_calls[("s3", "DeleteObjects")] <= 3


def test_only_uploading_records_are_in_the_uploading_index(api, aws, uploaded):
    import boto3

    uploaded(n=2)
    prepare(api, 3)
    table = next(t for t in boto3.client("dynamodb").list_tables()["TableNames"])
    items = boto3.client("dynamodb").scan(TableName=table, IndexName="uploading-index")["Items"]
    assert len(items) == 3
    assert {i["status"]["S"] for i in items} == {"uploading"}
