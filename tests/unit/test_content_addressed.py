"""Content-addressed uploads: a declared SHA-256 signed into the URL, duplicates and rejected bytes never
stored twice, the trigger's hash of the bytes it reads, the hash claims' lifecycle, and lookup.

Races are forced with barriers and pause points (real handlers in threads, one moto); each ends with
tests/invariants.py, which checks that no dataset holds two uploaded images of the same bytes.
"""

import base64
import hashlib
import math
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file
from tests.unit.test_races import Run, outcome, pause_before
from uploads_core import hashes_table, images_bucket


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hashed(data: bytes, name: str = "car.jpg", mime: str = "image/jpeg") -> dict:
    return {**jpeg_file(name, len(data), mime), "sha256": sha(data)}


def records(aws, dataset_id: int) -> list[dict]:
    items = boto3.client("dynamodb").scan(TableName=aws["ImagesTable"])["Items"]
    return [i for i in items if i.get("dataset_id", {}).get("N") == str(dataset_id)]


def upload(api, processor, dataset_id: int, data: bytes, mime: str = "image/jpeg") -> dict:
    """Prepares `data` with its hash, PUTs it and lets the trigger judge it; returns the ticket."""
    ticket = api.prepare(dataset_id, [hashed(data, mime=mime)]).json["uploads"][0]
    processor.deliver(processor.put(ticket["s3_key"], data, mime))
    return ticket


GOOD = sample_images.jpeg_of_size(2000, tag=1)
HTML = sample_images.HTML


# --- The URL and the record -----------------------------------------------------------------------


def test_a_declared_hash_is_signed_into_the_url_and_named_in_the_headers_to_send(api):
    ticket = api.prepare(1, [hashed(GOOD)]).json["uploads"][0]

    query = parse_qs(urlsplit(ticket["upload_url"]).query)
    assert query["X-Amz-SignedHeaders"] == ["content-length;content-type;host;x-amz-checksum-sha256"]
    digest = base64.b64encode(hashlib.sha256(GOOD).digest()).decode()
    assert ticket["upload_headers"] == {"Content-Type": "image/jpeg", "x-amz-checksum-sha256": digest}
    assert (ticket["duplicate_of"], ticket["rejected_before"]) == (None, None)
    assert api.image("get_image", ticket["image_id"]).json["sha256"] == sha(GOOD)


def test_the_signed_checksum_is_the_declared_one(api, monkeypatch):
    # botocore signs what it is given: the URL is only as good as the ChecksumSHA256 passed to it.
    from uploads_core import images_bucket

    seen = []
    original = images_bucket._s3().generate_presigned_url

    def spy(operation, Params, ExpiresIn):
        seen.append(Params.get("ChecksumSHA256"))
        return original(operation, Params=Params, ExpiresIn=ExpiresIn)

    monkeypatch.setattr(images_bucket._s3(), "generate_presigned_url", spy)
    api.prepare(1, [hashed(GOOD)])
    assert seen == [base64.b64encode(hashlib.sha256(GOOD).digest()).decode()]


@pytest.mark.parametrize("value", ["A" * 64, "0" * 63, "0" * 65, "g" * 64, " " + "0" * 63, 12, ["0" * 64]])
def test_a_malformed_hash_is_a_422_that_writes_nothing(api, aws, value):
    reply = api.prepare(1, [{**jpeg_file(), "sha256": value}])
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["body", "files", 0, "sha256"]
    assert records(aws, 1) == []


def test_the_trigger_records_the_hash_of_the_bytes_when_none_was_declared(api, processor):
    ticket = api.prepare(1, [jpeg_file("car.jpg", len(GOOD))]).json["uploads"][0]
    assert ticket["upload_headers"] == {"Content-Type": "image/jpeg"}
    assert api.image("get_image", ticket["image_id"]).json["sha256"] is None
    processor.deliver(processor.put(ticket["s3_key"], GOOD))
    image = api.image("get_image", ticket["image_id"]).json
    assert (image["status"], image["sha256"]) == ("uploaded", sha(GOOD))


def test_bytes_that_are_not_the_declared_hash_are_rejected_by_the_trigger(api, processor, invariants):
    # S3 refuses them when the checksum is signed (the local stack's test); moto does not: the trigger does.
    other = sample_images.jpeg_of_size(2000, tag=2)
    ticket = api.prepare(1, [hashed(GOOD)]).json["uploads"][0]
    assert outcome(processor.deliver(processor.put(ticket["s3_key"], other))) == "rejected"

    image = api.image("get_image", ticket["image_id"]).json
    assert (image["status"], image["error_reason"]["code"]) == ("error", "checksum_mismatch")
    assert image["sha256"] == sha(other)  # a record's hash is the one of the bytes judged
    # A rejection of the declaration, not of GOOD's bytes: they are not "rejected before".
    again = api.prepare(1, [hashed(GOOD)]).json["uploads"][0]
    assert again["rejected_before"] is None
    assert again["upload_url"]
    invariants()


# --- Duplicates -------------------------------------------------------------------------------------


def test_bytes_already_uploaded_in_the_dataset_get_no_record_and_no_url(api, processor, aws, invariants):
    first = upload(api, processor, 1, GOOD)
    assert api.image("get_image", first["image_id"]).json["status"] == "uploaded"

    reply = api.prepare(1, [hashed(GOOD, "renamed.jpg")])
    assert reply.status == 200
    assert reply.json["uploads"] == [
        {
            "image_id": first["image_id"],
            "upload_url": None,
            "s3_key": first["s3_key"],
            "expires_in": None,
            "upload_headers": None,
            "duplicate_of": first["image_id"],
            "rejected_before": None,
        }
    ]
    assert len(records(aws, 1)) == 1
    invariants(kept_uploaded=[first["image_id"]])


def test_a_second_identical_file_of_a_batch_is_a_duplicate_of_the_first(api, aws):
    other = sample_images.jpeg_of_size(2000, tag=2)
    files = [hashed(GOOD, "a.jpg"), hashed(other, "b.jpg"), hashed(GOOD, "c.jpg")]
    a, b, c = api.prepare(1, files).json["uploads"]

    assert a["upload_url"]
    assert b["upload_url"]
    assert a["image_id"] != b["image_id"]
    assert (c["image_id"], c["duplicate_of"], c["s3_key"]) == (a["image_id"], a["image_id"], a["s3_key"])
    assert (c["upload_url"], c["expires_in"]) == (None, None)
    assert len(records(aws, 1)) == 2


def test_other_datasets_are_unaffected(api, processor, aws):
    upload(api, processor, 1, GOOD)
    ticket = api.prepare(2, [hashed(GOOD)]).json["uploads"][0]
    assert ticket["upload_url"]
    assert ticket["duplicate_of"] is None
    processor.deliver(processor.put(ticket["s3_key"], GOOD))
    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"


def test_bytes_being_uploaded_share_the_image_and_its_key(api, aws):
    first = api.prepare(1, [hashed(GOOD)], expires_in=600).json["uploads"][0]
    second = api.prepare(1, [hashed(GOOD, "copy.jpg")], expires_in=3600).json["uploads"][0]

    assert (second["image_id"], second["s3_key"]) == (first["image_id"], first["s3_key"])
    assert second["upload_url"]
    assert second["duplicate_of"] is None
    assert second["upload_headers"] == first["upload_headers"]
    assert 540 <= second["expires_in"] <= 600  # never past the first URL's end (cleanup counts on it)
    assert len(records(aws, 1)) == 1


def test_an_expiring_claim_is_taken_over_by_a_new_image(api, aws, invariants):
    first = api.prepare(1, [hashed(GOOD)], expires_in=30).json["uploads"][0]
    second = api.prepare(1, [hashed(GOOD)]).json["uploads"][0]

    assert second["image_id"] != first["image_id"]
    assert second["upload_url"]
    assert hashes_table.get(1, sha(GOOD)).image_id == second["image_id"]
    invariants()


def test_two_uploads_of_the_same_bytes_without_hash_keep_one_image(api, processor, invariants):
    a, b = api.prepare(1, [jpeg_file("a.jpg", len(GOOD)), jpeg_file("b.jpg", len(GOOD))]).json["uploads"]
    assert outcome(processor.deliver(processor.put(a["s3_key"], GOOD))) == "uploaded"
    assert outcome(processor.deliver(processor.put(b["s3_key"], GOOD))) == "rejected"

    image = api.image("get_image", b["image_id"]).json
    assert (image["status"], image["error_reason"]["code"]) == ("error", "duplicate")
    assert f"image {a['image_id']}" in image["error_reason"]["message"]
    invariants(kept_uploaded=[a["image_id"]])


# --- Rejected before --------------------------------------------------------------------------------


def test_bytes_rejected_before_get_no_url_and_the_reason(api, processor, aws, invariants):
    first = upload(api, processor, 1, HTML)
    assert api.image("get_image", first["image_id"]).json["error_reason"]["code"] == "not_an_image"

    again = api.prepare(1, [hashed(HTML, "again.jpg")]).json["uploads"][0]
    assert again["upload_url"] is None
    assert again["expires_in"] is None
    assert again["rejected_before"]["code"] == "not_an_image"
    assert again["image_id"] == first["image_id"]
    assert len(records(aws, 1)) == 1
    assert api.prepare(2, [hashed(HTML)]).json["uploads"][0]["upload_url"]  # another dataset
    invariants()


def test_a_wrong_declared_type_is_not_held_against_the_bytes(api, processor):
    png = sample_images.png()
    first = upload(api, processor, 1, png, mime="image/jpeg")
    assert api.image("get_image", first["image_id"]).json["error_reason"]["code"] == "type_mismatch"

    again = api.prepare(1, [hashed(png, "a.png", "image/png")]).json["uploads"][0]
    assert again["rejected_before"] is None
    assert again["upload_url"]
    processor.deliver(processor.put(again["s3_key"], png, "image/png"))
    assert api.image("get_image", again["image_id"]).json["status"] == "uploaded"


# --- Lifecycle: a claim never outlives its image ------------------------------------------------------


def test_a_deleted_image_is_never_answered_as_a_duplicate(api, processor, invariants):
    first = upload(api, processor, 1, GOOD)
    assert api.image("delete_image", first["image_id"]).status == 200
    assert hashes_table.get(1, sha(GOOD)) is None

    again = api.prepare(1, [hashed(GOOD)]).json["uploads"][0]
    assert again["duplicate_of"] is None
    assert again["image_id"] != first["image_id"]
    assert api.lookup(1, [sha(GOOD)]).json["found"][0]["image_id"] == again["image_id"]
    invariants()


def test_a_deleted_rejected_image_is_not_rejected_before_any_more(api, processor):
    first = upload(api, processor, 1, HTML)
    assert api.image("delete_image", first["image_id"]).status == 200
    assert api.prepare(1, [hashed(HTML)]).json["uploads"][0]["rejected_before"] is None


def test_cleanup_removes_a_stale_upload_with_its_claim(api, cleanup, invariants):
    first = api.prepare(1, [hashed(GOOD)], expires_in=600).json["uploads"][0]
    later = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cleanup(later)

    assert api.image("get_image", first["image_id"]).status == 404
    assert hashes_table.get(1, sha(GOOD)) is None
    invariants()


def test_cleanup_keeps_the_claim_another_image_took_over(api, cleanup, invariants):
    first = api.prepare(1, [hashed(GOOD)], expires_in=30).json["uploads"][0]
    second = api.prepare(1, [hashed(GOOD)], expires_in=3600).json["uploads"][0]
    # 24 h after the first URL's end, before the second's.
    at = (datetime.now(UTC) + timedelta(hours=24, minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cleanup(at)

    assert api.image("get_image", first["image_id"]).status == 404
    assert hashes_table.get(1, sha(GOOD)).image_id == second["image_id"]
    invariants()


# --- Lookup -----------------------------------------------------------------------------------------


def test_lookup_says_which_hashes_the_dataset_holds(api, processor):
    done = upload(api, processor, 1, GOOD)
    rejected = upload(api, processor, 1, HTML)
    pending = api.prepare(1, [hashed(sample_images.png())]).json["uploads"][0]
    absent = "0" * 64

    hashes = [sha(GOOD), absent, sha(HTML), sha(sample_images.png()), sha(GOOD)]
    reply = api.lookup(1, hashes)
    assert reply.status == 200
    found = {m["sha256"]: (m["image_id"], m["status"]) for m in reply.json["found"]}
    assert found == {
        sha(GOOD): (done["image_id"], "uploaded"),
        sha(HTML): (rejected["image_id"], "error"),
        sha(sample_images.png()): (pending["image_id"], "uploading"),
    }
    assert reply.json["missing"] == [absent]
    assert api.lookup(2, [sha(GOOD)]).json == {"found": [], "missing": [sha(GOOD)]}


@pytest.mark.parametrize("hashes", [[], ["0" * 64] * 1001, ["XYZ"]])
def test_lookup_takes_1_to_1000_well_formed_hashes(api, hashes):
    reply = api.lookup(1, hashes)
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"][:2] == ["body", "sha256"]


def test_lookup_of_1000_hashes_is_ten_batch_reads(api, aws_calls):
    aws_calls.clear()
    assert api.lookup(1, [f"{i:064x}" for i in range(1000)]).status == 200
    assert dict(aws_calls) == {("dynamodb", "BatchGetItem"): 10}


# --- Calls per batch --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 50, 120])
def test_prepare_of_n_hashed_files_makes_a_fixed_number_of_dynamodb_calls(api, aws_calls, n):
    files = [{**jpeg_file(f"{i}.jpg"), "sha256": f"{i:064x}"} for i in range(n)]
    aws_calls.clear()
    assert api.prepare(1, files).status == 200
    # ceil(n/100) BatchGetItem (who holds the hashes), 1 UpdateItem (the ids), ceil(n/50) transactions.
    assert dict(aws_calls) == {
        ("dynamodb", "BatchGetItem"): math.ceil(n / 100),
        ("dynamodb", "UpdateItem"): 1,
        ("dynamodb", "TransactWriteItems"): math.ceil(n / 50),
    }


def test_a_batch_of_duplicates_writes_nothing(api, processor, aws_calls, aws):
    upload(api, processor, 1, GOOD)
    aws_calls.clear()
    assert api.prepare(1, [hashed(GOOD)] * 3).status == 200
    assert dict(aws_calls) == {("dynamodb", "BatchGetItem"): 1}
    assert len(records(aws, 1)) == 1


# --- Races --------------------------------------------------------------------------------------------


def _both_read_first(monkeypatch):
    """Both prepares read the claims (finding none) before either writes its own."""
    barrier, original = threading.Barrier(2, timeout=10), hashes_table.get_many
    calls = threading.local()

    def read(*args, **kwargs):
        result = original(*args, **kwargs)
        if not getattr(calls, "done", False):
            calls.done = True
            barrier.wait()
        return result

    monkeypatch.setattr(hashes_table, "get_many", read)


def test_two_prepares_of_the_same_bytes_at_once_make_one_image(api, processor, aws, monkeypatch, invariants):
    _both_read_first(monkeypatch)
    one = Run(api.prepare, 1, [hashed(GOOD, "one.jpg")])
    two = Run(api.prepare, 1, [hashed(GOOD, "two.jpg")])
    a, b = one.result().json["uploads"][0], two.result().json["uploads"][0]

    assert a["image_id"] == b["image_id"]
    assert a["s3_key"] == b["s3_key"]
    assert a["upload_url"]
    assert b["upload_url"]
    assert len(records(aws, 1)) == 1
    # Both clients send the bytes: one version is judged, the other discarded.
    results = {outcome(processor.deliver(processor.put(t["s3_key"], GOOD))) for t in (a, b)}
    assert results == {"uploaded", "discarded"}
    invariants(kept_uploaded=[a["image_id"]])


def test_two_verdicts_on_the_same_bytes_at_once_keep_one_uploaded_image(
    api, processor, monkeypatch, invariants
):
    a, b = api.prepare(1, [jpeg_file("a.jpg", len(GOOD)), jpeg_file("b.jpg", len(GOOD))]).json["uploads"]
    # A's verdict waits until B's has been written.
    pause = pause_before(
        monkeypatch, hashes_table, "record_upload", lambda image, *r: image.id == a["image_id"]
    )
    held = Run(processor.deliver, processor.put(a["s3_key"], GOOD))
    assert pause.reached.wait(10)
    assert outcome(processor.deliver(processor.put(b["s3_key"], GOOD))) == "uploaded"
    pause.release()

    assert outcome(held.result()) == "rejected"
    assert hashes_table.get(1, sha(GOOD)).image_id == b["image_id"]
    invariants(kept_uploaded=[b["image_id"]])


def test_a_delete_racing_the_verdict_that_adds_a_hash_removes_its_claim_too(
    api, processor, monkeypatch, invariants
):
    ticket = api.prepare(1, [jpeg_file("a.jpg", len(GOOD))]).json["uploads"][0]
    record = processor.put(ticket["s3_key"], GOOD)
    # The DELETE read the record before the trigger's verdict gave it a hash and a claim.
    delete = pause_before(monkeypatch, images_bucket, "delete_everything")
    deleting = Run(api.image, "delete_image", ticket["image_id"])
    assert delete.reached.wait(10)
    assert outcome(processor.deliver(record)) == "uploaded"
    delete.release()

    assert deleting.result().status == 200
    assert hashes_table.get(1, sha(GOOD)) is None
    invariants()
