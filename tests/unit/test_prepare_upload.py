import math
import re
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest

from tests.unit.conftest import jpeg_file
from uploads_core.keys import safe_filename

KEY_RE = re.compile(r"^datasets/7/images/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}_(.+)$")


def test_prepare_returns_one_ticket_per_file_with_integer_ids_and_unique_keys(api):
    reply = api.prepare(7, [jpeg_file("car1.jpg"), jpeg_file("car2.jpg")])

    assert reply.status == 200
    uploads = reply.json["uploads"]
    assert [u["image_id"] for u in uploads] == [1, 2]
    assert [KEY_RE.match(u["s3_key"]).group(1) for u in uploads] == ["car1.jpg", "car2.jpg"]
    assert all(u["expires_in"] == 3600 for u in uploads)
    assert set(uploads[0]) == {
        "image_id",
        "upload_url",
        "s3_key",
        "expires_in",
        "upload_headers",  # the additions of content-addressed uploads
        "duplicate_of",
        "rejected_before",
    }
    assert uploads[0]["upload_headers"] == {"Content-Type": "image/jpeg"}
    assert (uploads[0]["duplicate_of"], uploads[0]["rejected_before"]) == (None, None)


def test_ids_keep_increasing_across_batches(api):
    first = api.prepare(7, [jpeg_file()] * 3).json["uploads"]
    second = api.prepare(8, [jpeg_file()] * 2).json["uploads"]
    assert [u["image_id"] for u in first + second] == [1, 2, 3, 4, 5]


def test_prepare_creates_uploading_records_with_utc_timestamps(api):
    uploads = api.prepare(7, [jpeg_file("car1.jpg", 2048, "image/png")]).json["uploads"]

    image = api.image("get_image", uploads[0]["image_id"]).json
    assert image["status"] == "uploading"
    assert (image["filename"], image["file_size"], image["mime_type"]) == ("car1.jpg", 2048, "image/png")
    assert (image["dataset_id"], image["s3_key"]) == (7, uploads[0]["s3_key"])
    assert (image["width"], image["height"]) == (None, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", image["created_at"])
    assert image["updated_at"] == image["created_at"]


def test_upload_url_is_sigv4_and_signs_declared_type_and_exact_length(api, bucket):
    ticket = api.prepare(7, [jpeg_file("car1.jpg", 123456, "image/webp")], expires_in=600).json["uploads"][0]

    url = urlsplit(ticket["upload_url"])
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host"]
    assert query["X-Amz-Expires"] == ["600"]
    assert ticket["expires_in"] == 600
    assert bucket in url.netloc + url.path
    assert unquote(url.path).endswith(ticket["s3_key"])


def test_each_url_signs_its_own_files_declared_type_and_length(api, monkeypatch):
    from uploads_core.presign import Presigner

    signed = []
    original = Presigner.put

    def spy(self, key, content_type, content_length, expires_in, now=None, checksum_sha256=None):
        signed.append((key, content_type, content_length, expires_in))
        return original(self, key, content_type, content_length, expires_in, now, checksum_sha256)

    monkeypatch.setattr(Presigner, "put", spy)
    files = [jpeg_file("a.gif", 4321, "image/gif"), jpeg_file("b.png", 99, "image/png")]
    tickets = api.prepare(7, files, expires_in=120).json["uploads"]

    # (test_presign.py proves these URLs are botocore's, byte for byte, for the same inputs.)
    assert signed == [
        (tickets[0]["s3_key"], "image/gif", 4321, 120),
        (tickets[1]["s3_key"], "image/png", 99, 120),
    ]


def test_upload_url_put_stores_the_object(api, s3, bucket):
    import requests

    ticket = api.prepare(7, [jpeg_file("car1.jpg", 5)]).json["uploads"][0]
    # moto intercepts the HTTP call in-process, as S3 would accept it.
    response = requests.put(ticket["upload_url"], data=b"hello", headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200
    assert s3.get_object(Bucket=bucket, Key=ticket["s3_key"])["Body"].read() == b"hello"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("voiture été (1).jpg", "voiture été (1).jpg"),
        ("../../etc/passwd", "_._etc_passwd"),
        ("..\\..\\windows\\system32.jpg", "_._windows_system32.jpg"),
        ("a/b/c.png", "a_b_c.png"),
        ("evil\x00name\n.jpg", "evilname.jpg"),
        ("rtl\u202egpj.exe", "rtlgpj.exe"),
        ("..", "file"),
        ("...jpg", "jpg"),
    ],
)
def test_filename_is_sanitised_in_the_key_but_kept_in_the_record(api, filename, expected):
    ticket = api.prepare(7, [jpeg_file(filename)]).json["uploads"][0]

    name = KEY_RE.match(ticket["s3_key"]).group(1)
    assert name == expected
    for forbidden in ("/", "\\", ".."):
        assert forbidden not in name
    assert not any(ord(c) < 32 for c in ticket["s3_key"])
    assert api.image("get_image", ticket["image_id"]).json["filename"] == filename


def test_long_names_keep_their_extension_and_fit_s3_key_limits():
    name = safe_filename("é" * 250 + ".jpeg")
    assert name.endswith(".jpeg")
    assert len(name.encode()) <= 200


def test_prepare_accepts_a_base64_encoded_body(api):
    reply = api.call("prepare_upload_base64")
    assert reply.status == 200
    assert reply.json["uploads"][0]["expires_in"] == 600


@pytest.mark.parametrize(
    ("files", "loc", "error_type"),
    [
        ([jpeg_file(mime="image/svg+xml")], ["body", "files", 0, "mime_type"], "literal_error"),
        ([jpeg_file(mime="text/html")], ["body", "files", 0, "mime_type"], "literal_error"),
        ([jpeg_file(size=0)], ["body", "files", 0, "file_size"], "greater_than_equal"),
        ([jpeg_file(size=10 * 1024 * 1024 + 1)], ["body", "files", 0, "file_size"], "less_than_equal"),
        ([jpeg_file(size="1024")], ["body", "files", 0, "file_size"], "value_error"),
        ([jpeg_file(size=True)], ["body", "files", 0, "file_size"], "value_error"),
        ([jpeg_file(size=10.5)], ["body", "files", 0, "file_size"], "int_from_float"),
        ([jpeg_file(name="")], ["body", "files", 0, "filename"], "string_too_short"),
        ([jpeg_file(name="a" * 256)], ["body", "files", 0, "filename"], "string_too_long"),
        ([], ["body", "files"], "too_short"),
        ([jpeg_file()] * 1001, ["body", "files"], "too_long"),
        ([{"filename": "a.jpg", "file_size": 1}], ["body", "files", 0, "mime_type"], "missing"),
    ],
)
def test_invalid_batches_get_422_with_field_location_and_write_nothing(
    api, aws_calls, files, loc, error_type
):
    reply = api.prepare(7, files)

    assert reply.status == 422
    assert {"loc": loc, "type": error_type} in [
        {"loc": e["loc"], "type": e["type"]} for e in reply.json["detail"]
    ]
    assert all(e["msg"] for e in reply.json["detail"])
    assert not [call for call in aws_calls if call[0] == "dynamodb"]
    # The counter was not bumped either: the next valid batch starts at 1.
    assert api.prepare(7, [jpeg_file()]).json["uploads"][0]["image_id"] == 1


def test_one_bad_file_rejects_the_whole_batch(api, aws):
    files = [jpeg_file(f"ok{i}.jpg") for i in range(10)] + [jpeg_file("bad.svg", mime="image/svg+xml")]
    assert api.prepare(7, files).status == 422
    assert api.list(7).json == []


def test_malformed_json_gets_400(api):
    reply = api.call("prepare_upload", raw_body='{"files": [')
    assert reply.status == 400
    assert reply.json == {"detail": "Malformed JSON body"}


@pytest.mark.parametrize("dataset_id", ["0", "-1", "abc", "1.5", str(2**53)])
def test_dataset_id_must_be_a_positive_integer(api, dataset_id):
    reply = api.call(
        "prepare_upload",
        path=f"/datasets/{dataset_id}/images/prepare-upload",
        path_params={"dataset_id": dataset_id},
    )
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["path", "dataset_id"]


@pytest.mark.parametrize("expires_in", ["0", "604801", "soon"])
def test_expires_in_out_of_range_gets_422(api, expires_in):
    reply = api.prepare(7, [jpeg_file()], expires_in=expires_in)
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["query", "expires_in"]


@pytest.mark.parametrize("count", [1, 25, 26, 1000])
def test_prepare_makes_one_counter_update_and_ceil_n_over_25_batch_writes(api, aws_calls, count):
    reply = api.prepare(7, [jpeg_file(f"car{i}.jpg") for i in range(count)])

    assert reply.status == 200
    assert len(reply.json["uploads"]) == count
    dynamodb = {op: n for (service, op), n in aws_calls.items() if service == "dynamodb"}
    assert dynamodb == {"UpdateItem": 1, "BatchWriteItem": math.ceil(count / 25)}
    assert sum(dynamodb.values()) == 1 + math.ceil(count / 25)
    assert not [call for call in aws_calls if call[0] == "s3"]


def test_prepare_of_1000_files_stores_every_record(api, aws, template):
    from local_stack.template import function_environment

    api.prepare(7, [jpeg_file(f"car{i}.jpg") for i in range(1000)])
    table = function_environment(template, "ApiFunction")["IMAGES_TABLE"]
    count = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["ItemCount"]
    # 1000 images plus the id counter.
    assert count == 1001
