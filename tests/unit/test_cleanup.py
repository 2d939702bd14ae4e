"""CleanupFunction: `uploading` records long past their URL's expiry go, with their objects; nothing else."""

import functools
from datetime import UTC, datetime

import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file

CREATED = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)


@pytest.fixture
def at_creation(monkeypatch):
    """Prepare-upload calls made through this fixture record CREATED as their creation time."""
    from images_api import logic

    monkeypatch.setattr(logic, "utc_now", lambda: CREATED)


def prepare(api, n=1, dataset=1, expires_in=3600):
    files = [jpeg_file(f"c{i}.jpg", 3) for i in range(n)]
    return api.prepare(dataset, files, expires_in=expires_in).json["uploads"]


def all_versions(s3, bucket) -> list:
    listing = s3.list_object_versions(Bucket=bucket)
    return listing.get("Versions", []) + listing.get("DeleteMarkers", [])


def test_uploads_24_hours_past_their_url_expiry_are_removed_with_every_object_version(
    api, at_creation, cleanup, s3, bucket
):
    tickets = prepare(api, 3)  # URLs valid until 09:00
    # One client PUT its file twice but never confirmed (and no trigger ran): every version goes too.
    s3.put_object(Bucket=bucket, Key=tickets[0]["s3_key"], Body=b"abc")
    s3.put_object(Bucket=bucket, Key=tickets[0]["s3_key"], Body=b"abd")

    report = cleanup("2026-11-21T09:00:01Z")  # expiry + 24 h and a second

    assert report == {"cutoff": "2026-11-20T09:00:01Z", "found": 3, "removed": 3, "kept": 0}
    assert api.list(1).json == []
    assert all_versions(s3, bucket) == []


def test_uploads_are_kept_until_24_hours_after_their_url_expired(api, at_creation, cleanup):
    prepare(api, 2)
    report = cleanup("2026-11-21T08:59:59Z")
    assert report["found"] == report["removed"] == 0
    assert len(api.list(1).json) == 2


def test_the_url_lifetime_not_the_creation_time_decides(api, at_creation, cleanup):
    short = prepare(api, 1, expires_in=60)[0]
    long = prepare(api, 1, expires_in=3600)[0]
    assert api.image("get_image", long["image_id"]).json["upload_expires_at"] == "2026-11-20T09:00:00Z"

    report = cleanup("2026-11-21T08:30:00Z")  # 24 h after the short URL died, the long one + 23.5 h

    assert (report["found"], report["removed"]) == (1, 1)
    assert [i["id"] for i in api.list(1).json] == [long["image_id"]]
    assert api.image("get_image", short["image_id"]).status == 404


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


def test_a_late_upload_wins_over_the_cleanup(api, at_creation, cleanup, monkeypatch, processor, s3, bucket):
    from uploads_core import images_table

    data = sample_images.jpeg()
    ticket = api.prepare(1, [jpeg_file("late.jpg", len(data))]).json["uploads"][0]
    record = processor.put(ticket["s3_key"], data)
    original = images_table.query_stale_uploads

    def then_uploaded(cutoff):
        for image in original(cutoff):
            processor.deliver(record)  # the S3 trigger accepts the upload between the query and the delete
            yield image

    monkeypatch.setattr(images_table, "query_stale_uploads", then_uploaded)
    report = cleanup("2026-11-22T00:00:00Z")

    assert (report["found"], report["removed"], report["kept"]) == (1, 0, 1)
    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"
    keys = sorted(v["Key"].split("/")[0] for v in all_versions(s3, bucket))
    assert keys == ["datasets", "thumbnails"]  # the upload and its thumbnail, one version each


def test_pages_through_any_number_of_stale_uploads_without_a_scan(
    api, at_creation, cleanup, aws_calls, monkeypatch
):
    from uploads_core.images_table import UPLOADING_SHARDS, ImageRecord

    # DynamoDB pages by 1 MB; pages of 10 records make 250 records take several pages per shard.
    index = ImageRecord.uploading_index
    monkeypatch.setattr(index, "query", functools.partial(index.query, page_size=10))
    prepare(api, 200, dataset=1)
    prepare(api, 50, dataset=2)
    aws_calls.clear()

    report = cleanup("2026-11-22T00:00:00Z")

    assert report["removed"] == 250
    assert api.list(1).json == []
    assert api.list(2).json == []
    assert aws_calls[("dynamodb", "Scan")] == 0
    assert aws_calls[("dynamodb", "Query")] >= 250 // 10 > UPLOADING_SHARDS  # every page of every shard
    # Versions are found per image (its key, its thumbnails), deleted in batches, not one by one.
    assert aws_calls[("s3", "ListObjectVersions")] == 2 * 250
    assert aws_calls[("s3", "DeleteObjects")] == 0  # nothing was ever PUT
    assert aws_calls[("s3", "DeleteObject")] == 0


def test_only_uploading_records_are_in_the_uploading_index(api, aws, uploaded):
    import boto3

    uploaded(n=2)
    prepare(api, 3)
    table = next(t for t in boto3.client("dynamodb").list_tables()["TableNames"])
    items = boto3.client("dynamodb").scan(TableName=table, IndexName="uploading-index")["Items"]
    assert len(items) == 3
    assert {i["status"]["S"] for i in items} == {"uploading"}
