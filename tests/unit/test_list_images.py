import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file


@pytest.fixture
def mixed(api, uploaded, processor, built_once):
    """Dataset 1: ids 1..10, the even ones uploaded (verified); dataset 2 has one image of its own.

    Built through the API in the module's first test; the later ones get the same store back."""

    def build():
        tickets = api.prepare(1, [jpeg_file(f"car{i}.jpg") for i in range(10)]).json["uploads"]
        ids = [t["image_id"] for t in tickets]
        good = {t["s3_key"]: sample_images.jpeg_of_size(1024, tag=t["image_id"]) for t in tickets[1::2]}
        processor.deliver(*(processor.put(key, data) for key, data in good.items()))
        uploaded(dataset_id=2, n=1)
        return ids, ids[1::2]

    return built_once("mixed", build)


def walk(api, dataset_id, with_urls=False, **query):
    pages, cursor = [], None
    while True:
        reply = api.list(dataset_id, with_urls, **query, **({"cursor": cursor} if cursor else {}))
        assert reply.status == 200
        pages.append([item["id"] for item in reply.json])
        cursor = reply.headers.get("x-next-cursor")
        if not cursor:
            return pages


def test_list_returns_a_datasets_images_in_id_order_without_urls(api, mixed):
    ids, _ = mixed
    reply = api.list(1)
    assert [i["id"] for i in reply.json] == ids
    assert "download_url" not in reply.json[0]
    assert "x-next-cursor" not in reply.headers


def test_skip_and_limit_page_through_in_order(api, mixed):
    ids, _ = mixed
    assert [i["id"] for i in api.list(1, skip=2, limit=3).json] == ids[2:5]
    assert [i["id"] for i in api.list(1, skip=9, limit=3).json] == ids[9:]
    assert api.list(1, skip=50).json == []


def test_status_filter_gives_full_pages(api, mixed):
    _, uploaded_ids = mixed
    reply = api.list(1, status="uploaded", limit=3)
    assert [i["id"] for i in reply.json] == uploaded_ids[:3]
    assert all(i["status"] == "uploaded" for i in reply.json)
    assert [i["id"] for i in api.list(1, status="uploading", skip=1, limit=2).json] == mixed[0][2:5:2]


def test_cursor_walks_every_image_exactly_once(api, mixed):
    ids, uploaded_ids = mixed
    assert walk(api, 1, limit=3) == [ids[0:3], ids[3:6], ids[6:9], ids[9:10]]
    assert walk(api, 1, status="uploaded", limit=2) == [
        uploaded_ids[0:2],
        uploaded_ids[2:4],
        uploaded_ids[4:],
    ]
    assert walk(api, 1, with_urls=True, limit=5) == [ids[:5], ids[5:]]


def test_no_cursor_when_the_page_is_exactly_the_last(api, mixed):
    reply = api.list(1, limit=10)
    assert len(reply.json) == 10
    assert "x-next-cursor" not in reply.headers


def test_a_cursor_page_is_a_keyed_query_of_page_size(api, mixed, monkeypatch):
    # O(page) at any depth: DynamoDB is asked for the rows after the cursor, limit + 1 of them.
    import botocore.client

    queries = []
    original = botocore.client.BaseClient._make_api_call

    def spy(self, operation_name, params):
        if operation_name == "Query":
            queries.append(params)
        return original(self, operation_name, params)

    cursor = api.list(1, limit=3).headers["x-next-cursor"]
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    api.list(1, limit=3, cursor=cursor)

    assert len(queries) == 1
    assert queries[0]["Limit"] == 4
    assert ">" in queries[0]["KeyConditionExpression"]
    assert queries[0]["IndexName"] == "dataset-index"


@pytest.mark.parametrize(("bad", "status"), [("abc", 400), ("W10", 400), ("%%%", 400), ("x" * 600, 422)])
def test_corrupt_cursors_get_a_4xx(api, mixed, bad, status):
    reply = api.list(1, cursor=bad)
    assert reply.status == status
    assert "detail" in reply.json


def test_forged_or_foreign_cursors_get_400(api, mixed):
    import base64

    cursor = api.list(1, limit=3).headers["x-next-cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[1] ^= 1  # flip a bit of the payload, keep the signature
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

    assert api.list(1, cursor=forged).status == 400
    assert api.list(2, cursor=cursor).status == 400
    assert api.list(1, cursor=cursor, status="uploaded").status == 400
    assert api.list(1, cursor=cursor).status == 200


def test_with_urls_signs_downloads_for_uploaded_images_only(api, mixed, aws_calls):
    aws_calls.clear()
    items = api.list(1, with_urls=True, expires_in=120).json

    for item in items:
        if item["status"] == "uploaded":
            assert "X-Amz-Signature=" in item["download_url"]
            assert item["url_expires_in"] == 120
        else:
            assert item["download_url"] is None
            assert item["url_expires_in"] is None
    assert sum(1 for i in items if i["download_url"]) == 5
    # Signing is local: no S3 call at all, one DynamoDB query for the page.
    assert not [c for c in aws_calls if c[0] == "s3"]
    assert aws_calls[("dynamodb", "Query")] == 1


def test_with_urls_items_have_the_notes_fields(api, uploaded):
    uploaded(dataset_id=3)
    item = api.list(3, with_urls=True).json[0]
    note = [
        "id", "filename", "s3_key", "file_size", "mime_type", "width", "height", "status",
        "dataset_id", "created_at", "updated_at", "download_url", "url_expires_in",
    ]  # fmt: skip
    # The note's fields in its order; later issues only add fields.
    assert [key for key in item if key in note] == note
    assert set(item) - set(note) == {
        "orientation", "error_reason", "upload_expires_at", "thumbnail_url",
        "display_width", "display_height", "placeholder", "has_location", "sha256",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 1001}, ["query", "limit"]),
        ({"skip": -1}, ["query", "skip"]),
        ({"status": "done"}, ["query", "status"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"has_location": "maybe"}, ["query", "has_location"]),
    ],
)
def test_bad_list_parameters_get_422(api, query, loc):
    for with_urls in (False, True):
        reply = api.list(1, with_urls, **query)
        assert reply.status == 422
        assert reply.json["detail"][0]["loc"] == loc


def test_an_empty_dataset_lists_as_an_empty_array(api, aws):
    assert api.list(42).json == []
