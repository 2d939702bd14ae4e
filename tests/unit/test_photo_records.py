"""What the S3 trigger records of a photo (issue 14), as the API answers it: display size, placeholder,
has_location, and the `?has_location=` filter of the listings (full pages, a cursor bound to it)."""

import base64

import pytest
import thumbhash
from PIL import Image

from tests import sample_images
from tests.unit.conftest import jpeg_file

GPS = {1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)}


def with_gps(img: Image.Image, orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update(GPS)
    if orientation:
        exif[0x0112] = orientation
    return sample_images.encode(img, "JPEG", exif=exif)


def upload(api, processor, dataset_id: int, files: list[tuple[str, bytes, str]]) -> list[int]:
    specs = [jpeg_file(name, len(data), mime) for name, data, mime in files]
    tickets = api.prepare(dataset_id, specs).json["uploads"]
    processor.deliver(
        *(processor.put(t["s3_key"], data, mime) for t, (_, data, mime) in zip(tickets, files, strict=True))
    )
    return [t["image_id"] for t in tickets]


def test_a_heic_record_has_stored_and_display_sizes_a_placeholder_and_its_location(api, processor):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8825).update(GPS)
    heic = sample_images.heic(Image.new("RGB", (96, 64), (200, 100, 50)), exif=exif.tobytes())
    [image_id] = upload(api, processor, 1, [("IMG_0001.HEIC", heic, "image/heic")])

    image = api.image("get_image", image_id).json
    assert image["status"] == "uploaded"
    assert (image["width"], image["height"], image["orientation"]) == (96, 64, 6)
    assert (image["display_width"], image["display_height"]) == (64, 96)
    assert image["has_location"] is True
    width, height, _ = thumbhash.thumb_hash_to_rgba(list(base64.b64decode(image["placeholder"])))
    assert width < height
    [listed] = api.list(1, with_urls=True).json
    assert {k: listed[k] for k in image} == image
    assert listed["thumbnail_url"]


def test_a_rejected_upload_has_none_of_them(api, processor):
    [image_id] = upload(api, processor, 1, [("fake.avif", sample_images.HTML, "image/avif")])
    image = api.image("get_image", image_id).json
    assert image["status"] == "error"
    assert [image[k] for k in ("display_width", "display_height", "placeholder", "has_location")] == [
        None
    ] * 4


@pytest.fixture
def located(api, processor, built_once):
    """Dataset 1: 12 uploaded JPEGs, ids 3, 4, 9 and 11 of them with GPS; one still uploading."""

    def build():
        # Distinct bytes each: a dataset holds a picture's bytes once (duplicates are rejected).
        def photo(i: int) -> bytes:
            picture = Image.new("RGB", (40, 30), (9, 9, 20 * i))
            return with_gps(picture) if i in (3, 4, 9, 11) else sample_images.encode(picture, "JPEG")

        files = [(f"p{i}.jpg", photo(i), "image/jpeg") for i in range(1, 13)]
        ids = upload(api, processor, 1, files)
        pending = api.prepare(1, [jpeg_file("later.jpg")]).json["uploads"][0]["image_id"]
        return ids, [ids[i - 1] for i in (3, 4, 9, 11)], pending

    return built_once("located", build)


def walk(api, with_urls=False, **query) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        reply = api.list(1, with_urls, **query, **({"cursor": cursor} if cursor else {}))
        assert reply.status == 200, reply.json
        pages.append([item["id"] for item in reply.json])
        cursor = reply.headers.get("x-next-cursor")
        if not cursor:
            return pages


@pytest.mark.parametrize("with_urls", [False, True])
def test_has_location_true_lists_only_the_photos_with_gps_in_full_pages(api, located, with_urls):
    _, gps_ids, _ = located
    reply = api.list(1, with_urls, has_location="true", limit=3)
    assert [i["id"] for i in reply.json] == gps_ids[:3]  # a full page, though the filter skips most rows
    assert all(i["has_location"] is True for i in reply.json)
    assert walk(api, with_urls, has_location="true", limit=3) == [gps_ids[:3], gps_ids[3:]]
    assert walk(api, with_urls, has_location="true", limit=2) == [gps_ids[:2], gps_ids[2:]]
    assert [i["id"] for i in api.list(1, with_urls, has_location="true", skip=1, limit=2).json] == gps_ids[
        1:3
    ]


def test_has_location_false_lists_the_others_including_records_without_a_verdict(api, located):
    ids, gps_ids, pending = located
    others = [i for i in ids if i not in gps_ids] + [pending]
    assert [i for page in walk(api, has_location="false", limit=5) for i in page] == others
    uploaded_others = [i for i in ids if i not in gps_ids]
    assert [
        i for page in walk(api, has_location="false", status="uploaded", limit=5) for i in page
    ] == uploaded_others


def test_a_cursor_is_bound_to_its_location_filter(api, located):
    cursor = api.list(1, has_location="true", limit=1).headers["x-next-cursor"]
    assert api.list(1, has_location="true", limit=1, cursor=cursor).status == 200
    for other in ({}, {"has_location": "false"}):
        reply = api.list(1, limit=1, cursor=cursor, **other)
        assert reply.status == 400
        assert "location filter" in reply.json["detail"]
    plain = api.list(1, limit=1).headers["x-next-cursor"]
    assert api.list(1, limit=1, cursor=plain).status == 200  # cursors without the filter: unchanged
    assert api.list(1, limit=1, cursor=plain, has_location="true").status == 400


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_bad_has_location_value_is_a_422(api, value):
    reply = api.list(1, has_location=value)
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["query", "has_location"]
