from concurrent.futures import ThreadPoolExecutor

from tests.unit.conftest import jpeg_file
from uploads_core import images_table
from uploads_core.models import ImageStatus


def test_concurrent_reservations_never_share_an_id(aws):
    with ThreadPoolExecutor(max_workers=8) as pool:
        ranges = list(pool.map(images_table.reserve_ids, [5] * 40))
    ids = [i for r in ranges for i in r]
    assert sorted(ids) == list(range(1, 201))


def test_a_record_is_found_by_its_s3_key_with_one_index_query(api, aws_calls):
    tickets = api.prepare(3, [jpeg_file("a.jpg"), jpeg_file("b.jpg")]).json["uploads"]
    aws_calls.clear()

    image = images_table.find_by_key(tickets[1]["s3_key"])

    assert image.id == tickets[1]["image_id"]
    assert dict(aws_calls) == {("dynamodb", "Query"): 1}
    assert images_table.find_by_key("datasets/3/images/nope.jpg") is None


def test_update_is_refused_when_the_status_changed_meanwhile(api):
    ticket = api.prepare(3, [jpeg_file()]).json["uploads"][0]
    stale = images_table.get(ticket["image_id"])
    assert images_table.update(stale, {"status": ImageStatus.ERROR}) is not None

    assert images_table.update(stale, {"width": 4}) is None
    assert images_table.get(ticket["image_id"]).width is None


def test_no_verdict_is_written_over_an_uploaded_record(api):
    ticket = api.prepare(3, [jpeg_file()]).json["uploads"][0]
    image = images_table.get(ticket["image_id"])
    verdict = {"status": ImageStatus.UPLOADED, "object_version": "v1"}
    assert images_table.record_verdict(image, verdict, "0010") is not None

    for status in (ImageStatus.UPLOADED, ImageStatus.ERROR):
        assert images_table.record_verdict(image, {"status": status, "object_version": "v2"}, "0020") is None
    assert images_table.get(ticket["image_id"]).object_version == "v1"


def test_a_verdict_needs_a_later_sequencer_than_the_last_one(api):
    ticket = api.prepare(3, [jpeg_file()]).json["uploads"][0]
    image = images_table.get(ticket["image_id"])
    rejected = {"status": ImageStatus.ERROR, "object_version": "v2"}
    assert images_table.record_verdict(image, rejected, "0020") is not None

    for sequencer in ("0020", "001F"):
        accepted = {"status": ImageStatus.UPLOADED, "object_version": "v1"}
        assert images_table.record_verdict(image, accepted, sequencer) is None
    newer = {"status": ImageStatus.UPLOADED, "object_version": "v3"}
    assert images_table.record_verdict(image, newer, "0021") is not None


def test_a_verdict_never_creates_a_record(aws):
    from datetime import UTC, datetime

    from uploads_core.models import Image

    now = datetime(2026, 1, 1, tzinfo=UTC)
    ghost = Image(
        id=77, filename="x.jpg", s3_key="datasets/1/images/x.jpg", file_size=3, mime_type="image/jpeg",
        status=ImageStatus.UPLOADING, dataset_id=1, created_at=now, updated_at=now,
    )  # fmt: skip
    assert images_table.record_verdict(ghost, {"status": ImageStatus.UPLOADED}, "0001") is None
    assert images_table.get(77) is None
