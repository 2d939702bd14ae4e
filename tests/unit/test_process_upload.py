"""ProcessUploadFunction: verification, measurement, thumbnails, orphans, order and duplicates."""

import io

import pytest
from PIL import Image

from tests import sample_images
from tests.unit.conftest import jpeg_file


def prepare(
    api, data: bytes, mime: str = "image/jpeg", name: str = "car.jpg", size: int | None = None
) -> dict:
    files = [jpeg_file(name, len(data) if size is None else size, mime)]
    return api.prepare(1, files).json["uploads"][0]


def record_of(api, ticket) -> dict:
    return api.image("get_image", ticket["image_id"]).json


def object_exists(s3, bucket, key) -> bool:
    return s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) > 0


def test_a_good_jpeg_becomes_uploaded_with_dimensions_and_a_thumbnail_without_confirm(
    api, processor, s3, bucket
):
    data = sample_images.jpeg(640, 480)
    ticket = prepare(api, data)

    result = processor.deliver(processor.put(ticket["s3_key"], data))

    assert result["processed"][0]["result"] == "uploaded"
    image = record_of(api, ticket)
    assert (image["status"], image["width"], image["height"]) == ("uploaded", 640, 480)
    assert image["error_reason"] is None
    item = api.list(1, with_urls=True).json[0]
    thumb_key = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="thumbnails/")["Contents"]]
    assert len(thumb_key) == 1
    assert thumb_key[0].startswith("thumbnails/1/")
    assert thumb_key[0].split("?")[0] in item["thumbnail_url"]
    thumb = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=thumb_key[0])["Body"].read()))
    assert max(thumb.size) <= 256
    assert thumb.size == (256, 192)


def test_url_encoded_keys_with_spaces_and_accents_are_decoded(api, processor):
    data = sample_images.png()
    ticket = prepare(api, data, "image/png", name="voiture été (1).png")
    record = processor.put(ticket["s3_key"], data, "image/png")
    assert "+" in record["s3"]["object"]["key"]
    assert "%C3%A9" in record["s3"]["object"]["key"]

    processor.deliver(record)

    assert record_of(api, ticket)["status"] == "uploaded"


@pytest.mark.parametrize(
    ("data", "declared", "code"),
    [
        (sample_images.HTML, "image/jpeg", "not_an_image"),
        (sample_images.png(), "image/jpeg", "type_mismatch"),
        (sample_images.jpeg(200, 100)[:-400], "image/jpeg", "corrupt"),
        (sample_images.png_bomb(), "image/png", "too_many_pixels"),
        (b"GIF89a" + b"\0" * 100, "image/gif", "corrupt"),
    ],
    ids=["html-named-jpg", "png-declared-jpeg", "truncated", "bomb", "broken-gif"],
)
def test_hostile_files_end_in_error_with_a_reason_and_their_object_deleted(
    api, processor, s3, bucket, invariants, data, declared, code
):
    ticket = prepare(api, data, declared)

    processor.deliver(processor.put(ticket["s3_key"], data, declared))

    image = record_of(api, ticket)
    assert image["status"] == "error"
    assert image["error_reason"]["code"] == code
    assert image["error_reason"]["message"]
    assert not object_exists(s3, bucket, ticket["s3_key"])
    assert api.image("get_download_url", ticket["image_id"]).status == 409
    invariants()  # no version of the rejected bytes is kept


def test_a_size_lie_is_rejected(api, processor, s3, bucket):
    data = sample_images.jpeg()
    ticket = prepare(api, data, size=len(data) + 10)

    processor.deliver(processor.put(ticket["s3_key"], data))

    assert record_of(api, ticket)["error_reason"]["code"] == "size_mismatch"
    assert not object_exists(s3, bucket, ticket["s3_key"])


def test_a_jpeg_whose_header_is_after_200_kib_is_still_measured(api, processor):
    data = sample_images.jpeg(321, 123, icc_bytes=200 * 1024)
    ticket = prepare(api, data)
    processor.deliver(processor.put(ticket["s3_key"], data))
    image = record_of(api, ticket)
    assert (image["status"], image["width"], image["height"]) == ("uploaded", 321, 123)


def test_exif_orientation_6_gives_an_upright_thumbnail_and_stored_dimensions(api, processor, s3, bucket):
    data = sample_images.jpeg(400, 200, orientation=6)
    ticket = prepare(api, data)
    processor.deliver(processor.put(ticket["s3_key"], data))

    image = record_of(api, ticket)
    assert (image["width"], image["height"], image["orientation"]) == (400, 200, 6)
    key = s3.list_objects_v2(Bucket=bucket, Prefix="thumbnails/")["Contents"][0]["Key"]
    thumb = Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert thumb.height > thumb.width


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (sample_images.gif(30, 20), "image/gif", (30, 20)),
        (sample_images.webp(50, 40), "image/webp", (50, 40)),
        (sample_images.png(40, 30, alpha=True), "image/png", (40, 30)),
    ],
)
def test_gif_webp_and_png_with_alpha_are_accepted(api, processor, data, mime, size):
    ticket = prepare(api, data, mime)
    processor.deliver(processor.put(ticket["s3_key"], data, mime))
    image = record_of(api, ticket)
    assert (image["status"], image["width"], image["height"]) == ("uploaded", *size)


def _final(api, ticket) -> dict:
    image = record_of(api, ticket)
    image.pop("updated_at")
    return image


@pytest.mark.parametrize("good", [True, False], ids=["good-file", "bad-file"])
def test_confirm_and_trigger_in_either_order_give_the_same_record(api, processor, good):
    data = sample_images.jpeg(80, 60) if good else sample_images.HTML
    # Two datasets: one dataset keeps one image of the same bytes (test_content_addressed.py).
    first = prepare(api, data)
    second = api.prepare(2, [jpeg_file("car.jpg", len(data))]).json["uploads"][0]

    # Order A: the trigger, then confirm.
    processor.deliver(processor.put(first["s3_key"], data))
    api.confirm(1, [first["image_id"]])
    # Order B: confirm, then the trigger.
    record = processor.put(second["s3_key"], data)
    api.confirm(2, [second["image_id"]])
    processor.deliver(record)

    a, b = _final(api, first), _final(api, second)
    for image in (a, b):
        image.pop("id"), image.pop("s3_key"), image.pop("created_at"), image.pop("upload_expires_at")
        image.pop("dataset_id")
    assert a == b
    assert a["status"] == ("uploaded" if good else "error")


def test_the_same_event_twice_changes_nothing_the_second_time(api, processor, s3, bucket):
    data = sample_images.jpeg()
    ticket = prepare(api, data)
    record = processor.put(ticket["s3_key"], data)
    processor.deliver(record)
    before = record_of(api, ticket)
    thumbs = s3.list_objects_v2(Bucket=bucket, Prefix="thumbnails/")["KeyCount"]

    result = processor.deliver(record)

    assert result["processed"][0]["result"] == "stale"
    assert record_of(api, ticket) == before
    assert s3.list_objects_v2(Bucket=bucket, Prefix="thumbnails/")["KeyCount"] == thumbs


def test_a_second_put_is_rechecked_and_a_late_event_of_the_first_is_dropped(
    api, processor, s3, bucket, invariants, aws_calls
):
    good = sample_images.jpeg(90, 70)
    bad = sample_images.HTML[: len(good)].ljust(len(good), b" ")
    ticket = prepare(api, good)
    old = processor.put(ticket["s3_key"], good)
    new = processor.put(ticket["s3_key"], bad)

    processor.deliver(new)
    aws_calls.clear()
    result = processor.deliver(old)  # late: its sequencer is smaller than the rejected version's

    assert result["processed"][0]["result"] == "stale"
    assert aws_calls[("s3", "GetObject")] == 0  # dropped unread

    image = record_of(api, ticket)
    assert image["status"] == "error"
    assert image["error_reason"]["code"] == "not_an_image"
    invariants()
    assert s3.list_object_versions(Bucket=bucket).get("Versions", []) == []


def test_a_good_second_put_replaces_a_rejected_first_one(api, processor):
    good = sample_images.jpeg(90, 70)
    bad = sample_images.HTML[: len(good)].ljust(len(good), b" ")
    ticket = prepare(api, good)

    processor.deliver(processor.put(ticket["s3_key"], bad))
    assert record_of(api, ticket)["status"] == "error"
    processor.deliver(processor.put(ticket["s3_key"], good))

    image = record_of(api, ticket)
    assert (image["status"], image["width"], image["error_reason"]) == ("uploaded", 90, None)


def test_confirm_never_turns_a_rejected_image_back_into_uploaded(api, processor, s3, bucket):
    data = sample_images.HTML
    ticket = prepare(api, data)
    processor.deliver(processor.put(ticket["s3_key"], data))
    # The client PUTs the same bytes again and confirms before the new event is processed.
    s3.put_object(Bucket=bucket, Key=ticket["s3_key"], Body=data, ContentType="image/jpeg")

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.json["updated_count"] == 0
    assert record_of(api, ticket)["status"] == "error"


def test_an_object_without_a_record_is_an_orphan_and_is_deleted(processor, s3, bucket):
    key = "datasets/1/images/00000000-0000-4000-8000-000000000000_stray.jpg"
    result = processor.deliver(processor.put(key, sample_images.jpeg()))
    assert result["processed"][0]["result"] == "orphan_deleted"
    assert not object_exists(s3, bucket, key)


def test_an_object_of_a_deleted_image_is_an_orphan(api, processor, s3, bucket, invariants):
    data = sample_images.jpeg()
    ticket = prepare(api, data)
    api.image("delete_image", ticket["image_id"])

    result = processor.deliver(processor.put(ticket["s3_key"], data))  # through the still-valid URL

    assert result["processed"][0]["result"] == "orphan_deleted"
    assert invariants() == []


def test_one_failing_record_does_not_stop_the_others_and_the_batch_is_retried(api, processor, monkeypatch):
    from upload_processor.handler import RecordsFailed
    from uploads_core import images_bucket

    datas = [sample_images.jpeg_of_size(1024, tag=i) for i in range(3)]
    tickets = [prepare(api, data, name=f"c{i}.jpg") for i, data in enumerate(datas)]
    records = [processor.put(t["s3_key"], data) for t, data in zip(tickets, datas, strict=True)]
    original = images_bucket.open_version

    def flaky(key, version_id):
        if key == tickets[1]["s3_key"]:
            raise TimeoutError("S3 timed out")
        return original(key, version_id)

    monkeypatch.setattr(images_bucket, "open_version", flaky)
    with pytest.raises(RecordsFailed):
        processor.deliver(*records)
    assert [record_of(api, t)["status"] for t in tickets] == ["uploaded", "uploading", "uploaded"]

    # Lambda's retry of the whole event: done records are stale, the failed one goes through.
    monkeypatch.setattr(images_bucket, "open_version", original)
    results = [r["result"] for r in processor.deliver(*records)["processed"]]
    assert results == ["stale", "uploaded", "stale"]


def test_thumbnails_are_written_outside_the_trigger_prefix(api, processor, s3, bucket):
    data = sample_images.png()
    ticket = prepare(api, data, "image/png")
    processor.deliver(processor.put(ticket["s3_key"], data, "image/png"))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    thumbs = [k for k in keys if k != ticket["s3_key"]]
    assert len(thumbs) == 1
    assert not thumbs[0].startswith("datasets/")


def test_delete_removes_the_thumbnail_too(api, processor, s3, bucket):
    data = sample_images.jpeg()
    ticket = prepare(api, data)
    processor.deliver(processor.put(ticket["s3_key"], data))

    assert api.image("delete_image", ticket["image_id"]).status == 200
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_the_sample_event_parses_and_its_key_is_decoded(processor, monkeypatch):
    import json

    from tests.unit.conftest import EVENTS
    from upload_processor import logic

    seen = []
    monkeypatch.setattr(logic, "process_object", lambda obj: seen.append(obj) or _outcome(obj))
    processor.deliver(*json.loads((EVENTS / "s3" / "object_created.json").read_text())["Records"])
    assert seen[0].key.endswith("_voiture été (1).jpg")
    assert seen[0].size == 1024


def _outcome(obj):
    from upload_processor.models import Outcome

    return Outcome(key=obj.key, result="ignored")


def test_an_event_without_a_version_id_fails_loudly(processor, caplog):
    import json

    from tests.unit.conftest import EVENTS
    from upload_processor.handler import RecordsFailed

    (record,) = json.loads((EVENTS / "s3" / "object_created.json").read_text())["Records"]
    del record["s3"]["object"]["versionId"]  # an unversioned bucket: no deletion could be exact
    with pytest.raises(RecordsFailed):
        processor.deliver(record)
    assert "the images bucket must be versioned" in caplog.text
