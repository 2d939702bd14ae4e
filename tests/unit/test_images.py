import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file


@pytest.fixture
def pending(api):
    return api.prepare(1, [jpeg_file("car.jpg")]).json["uploads"][0]


def test_get_image_returns_the_record(api, pending):
    reply = api.image("get_image", pending["image_id"])
    assert reply.status == 200
    assert reply.json["id"] == pending["image_id"]
    assert reply.json["s3_key"] == pending["s3_key"]


def test_unknown_image_gets_404(api, aws):
    for event in ("get_image", "get_download_url", "delete_image"):
        reply = api.image(event, 12345)
        assert reply.status == 404
        assert reply.json == {"detail": "Image 12345 not found"}
    assert api.image("patch_image", 12345, body={"width": 5}).status == 404


@pytest.mark.parametrize("image_id", ["0", "-3", "abc", "1e3", str(2**53)])
def test_image_id_must_be_a_positive_integer(api, aws, image_id):
    reply = api.image("get_image", image_id)
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["path", "image_id"]


def test_download_url_is_refused_with_409_until_uploaded(api, pending):
    reply = api.image("get_download_url", pending["image_id"])
    assert reply.status == 409
    assert "uploading" in reply.json["detail"]


def test_download_url_of_an_uploaded_image_fetches_it(api, uploaded):
    import requests

    ticket = uploaded(size=1024)[0]
    reply = api.image("get_download_url", ticket["image_id"], query={"expires_in": 60})
    assert reply.status == 200
    assert reply.json["expires_in"] == 60
    assert "X-Amz-Expires=60" in reply.json["download_url"]
    assert requests.get(reply.json["download_url"]).content == sample_images.jpeg_of_size(1024, tag=1)


def test_download_urls_name_the_verified_version_whatever_is_put_later(api, uploaded, s3, bucket):
    import requests

    ticket = uploaded(size=1024)[0]
    # A second PUT through the still-valid upload URL, not (yet) discarded by the trigger.
    s3.put_object(Bucket=bucket, Key=ticket["s3_key"], Body=b"<html>" + b"x" * 1018)

    url = api.image("get_download_url", ticket["image_id"]).json["download_url"]
    (item,) = api.list(1, with_urls=True).json
    for signed in (url, item["download_url"]):
        assert "versionId=" in signed
        assert requests.get(signed).content == sample_images.jpeg_of_size(1024, tag=1)


def test_expires_in_is_capped_at_what_the_signing_credentials_honour(api, pending):
    reply = api.image("get_download_url", pending["image_id"], query={"expires_in": 3601})
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["query", "expires_in"]
    files = [jpeg_file("car.jpg")]
    assert api.prepare(1, files, expires_in=3601).status == 422
    assert api.prepare(1, files, expires_in=3600).status == 200


def test_patch_sets_dimensions_and_bumps_updated_at(api, pending, monkeypatch):
    from datetime import UTC, datetime

    from uploads_core import images_table

    later = datetime(2030, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(images_table, "utc_now", lambda: later)
    reply = api.image("patch_image", pending["image_id"], body={"width": 1920, "height": 1080})

    assert reply.status == 200
    assert (reply.json["width"], reply.json["height"]) == (1920, 1080)
    assert reply.json["updated_at"] == "2030-01-01T00:00:00Z"
    assert api.image("get_image", pending["image_id"]).json == reply.json


def test_patch_status_moves_the_image_between_filtered_listings(api, pending):
    reply = api.image("patch_image", pending["image_id"], body={"status": "error"})
    assert reply.status == 200
    assert reply.json["error_reason"]["code"] == "reported_failed"
    assert api.list(1, status="uploading").json == []
    assert [i["id"] for i in api.list(1, status="error").json] == [pending["image_id"]]


def test_patch_cannot_make_an_image_uploaded_even_with_its_object_present(api, pending, s3, bucket):
    s3.put_object(Bucket=bucket, Key=pending["s3_key"], Body=b"x" * 1024, ContentType="image/jpeg")
    reply = api.image("patch_image", pending["image_id"], body={"status": "uploaded"})
    assert reply.status == 409
    assert "verification" in reply.json["detail"]
    assert api.image("get_image", pending["image_id"]).json["status"] == "uploading"


@pytest.mark.parametrize(
    ("start", "target", "why"),
    [
        ("uploaded", "uploading", "final"),
        ("uploaded", "error", "final"),
        ("error", "uploading", "nothing goes back"),
        ("error", "uploaded", "verification"),
    ],
)
def test_patch_refuses_what_the_state_machine_refuses(api, uploaded, start, target, why):
    ticket = uploaded()[0]
    if start == "error":
        ticket = api.prepare(1, [jpeg_file("gone.jpg")]).json["uploads"][0]
        api.confirm(1, [ticket["image_id"]])  # nothing PUT: error (missing)
    before = api.image("get_image", ticket["image_id"]).json
    assert before["status"] == start

    reply = api.image("patch_image", ticket["image_id"], body={"status": target})

    assert reply.status == 409
    assert why in reply.json["detail"]
    assert api.image("get_image", ticket["image_id"]).json == before


def test_an_uploaded_image_patched_to_uploading_is_not_cleaned_up(api, uploaded, cleanup):
    ticket = uploaded()[0]
    assert api.image("patch_image", ticket["image_id"], body={"status": "uploading"}).status == 409
    assert cleanup("2099-01-01T00:00:00Z")["removed"] == 0
    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"


def test_patching_the_current_status_changes_nothing(api, uploaded):
    ticket = uploaded()[0]
    before = api.image("get_image", ticket["image_id"]).json
    reply = api.image("patch_image", ticket["image_id"], body={"status": "uploaded"})
    assert reply.status == 200
    assert reply.json == before


def test_a_patch_racing_a_verdict_loses_with_409(api, processor, monkeypatch):
    from uploads_core import images_table

    data = sample_images.jpeg(40, 30)
    ticket = api.prepare(1, [jpeg_file("car.jpg", len(data))]).json["uploads"][0]
    record = processor.put(ticket["s3_key"], data)
    original = images_table.update

    def verdict_first(image, changes, now=None):
        processor.deliver(record)  # the trigger's verdict lands between PATCH's read and its write
        return original(image, changes, now)

    monkeypatch.setattr(images_table, "update", verdict_first)
    reply = api.image("patch_image", ticket["image_id"], body={"status": "error", "width": 5})

    assert reply.status == 409
    image = api.image("get_image", ticket["image_id"]).json
    assert (image["status"], image["width"], image["error_reason"]) == ("uploaded", 40, None)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body"]),
        ({"width": 0}, ["body", "width"]),
        ({"height": -5}, ["body", "height"]),
        ({"width": "1920"}, ["body", "width"]),
        ({"width": 1.5}, ["body", "width"]),
        ({"status": "done"}, ["body", "status"]),
        ({"width": None}, ["body", "width"]),
        ({"filename": "x.jpg"}, ["body", "filename"]),
    ],
)
def test_bad_patches_get_422_and_change_nothing(api, pending, body, loc):
    before = api.image("get_image", pending["image_id"]).json
    reply = api.image("patch_image", pending["image_id"], body=body)
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == loc
    assert api.image("get_image", pending["image_id"]).json == before


def test_patch_with_malformed_json_gets_400(api, pending):
    reply = api.image("patch_image", pending["image_id"], raw_body="{width: 3}")
    assert reply.status == 400


def test_delete_removes_every_version_and_thumbnail_then_the_record(api, uploaded, s3, bucket):
    ticket = uploaded()[0]
    s3.put_object(Bucket=bucket, Key=ticket["s3_key"], Body=b"a later PUT")
    reply = api.image("delete_image", ticket["image_id"])

    assert reply.status == 200
    assert reply.json == {"message": f"Image {ticket['image_id']} deleted", "id": ticket["image_id"]}
    listing = s3.list_object_versions(Bucket=bucket)
    assert listing.get("Versions", []) == listing.get("DeleteMarkers", []) == []
    assert api.image("get_image", ticket["image_id"]).status == 404
    assert api.image("delete_image", ticket["image_id"]).status == 404


def test_delete_of_an_image_never_uploaded_works(api, pending):
    assert api.image("delete_image", pending["image_id"]).status == 200
    assert api.list(1).json == []
