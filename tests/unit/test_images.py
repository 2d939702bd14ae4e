import pytest

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

    ticket = uploaded(size=7)[0]
    reply = api.image("get_download_url", ticket["image_id"], query={"expires_in": 60})
    assert reply.status == 200
    assert reply.json["expires_in"] == 60
    assert "X-Amz-Expires=60" in reply.json["download_url"]
    assert requests.get(reply.json["download_url"]).content == b"\xff" * 7


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


def test_patch_to_uploaded_is_refused_while_the_object_is_missing(api, pending, s3, bucket):
    reply = api.image("patch_image", pending["image_id"], body={"status": "uploaded"})
    assert reply.status == 409
    assert api.image("get_image", pending["image_id"]).json["status"] == "uploading"

    s3.put_object(Bucket=bucket, Key=pending["s3_key"], Body=b"x")
    reply = api.image("patch_image", pending["image_id"], body={"status": "uploaded"})
    assert reply.status == 200
    assert reply.json["status"] == "uploaded"
    assert [i["id"] for i in api.list(1, status="uploaded").json] == [pending["image_id"]]


def test_patch_status_moves_the_image_between_filtered_listings(api, pending):
    api.image("patch_image", pending["image_id"], body={"status": "error"})
    assert api.list(1, status="uploading").json == []
    assert [i["id"] for i in api.list(1, status="error").json] == [pending["image_id"]]


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


def test_delete_removes_object_then_record(api, uploaded, s3, bucket):
    ticket = uploaded()[0]
    reply = api.image("delete_image", ticket["image_id"])

    assert reply.status == 200
    assert reply.json == {"message": f"Image {ticket['image_id']} deleted", "id": ticket["image_id"]}
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert api.image("get_image", ticket["image_id"]).status == 404
    assert api.image("delete_image", ticket["image_id"]).status == 404


def test_delete_of_an_image_never_uploaded_works(api, pending):
    assert api.image("delete_image", pending["image_id"]).status == 200
    assert api.list(1).json == []
