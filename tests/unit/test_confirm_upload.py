"""confirm-upload counts verified images, marks missing ones `error`, and waits (bounded) for verdicts."""

import threading
import time

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from tests import sample_images
from tests.unit.conftest import jpeg_file
from uploads_core import images_bucket, images_table


def prepare(api, data: bytes, name: str = "a.jpg", dataset: int = 1) -> dict:
    return api.prepare(dataset, [jpeg_file(name, len(data))]).json["uploads"][0]


def status_of(api, ticket) -> dict:
    return api.image("get_image", ticket["image_id"]).json


def test_verified_images_count_and_missing_ones_become_error(api, processor):
    data = sample_images.jpeg()
    tickets = [prepare(api, data, "a.jpg"), prepare(api, data, "b.jpg")]
    processor.deliver(processor.put(tickets[0]["s3_key"], data))

    reply = api.confirm(1, [t["image_id"] for t in tickets])

    assert reply.status == 200
    assert reply.json == {
        "message": "Successfully confirmed 1 uploads",
        "updated_count": 1,
        "total_requested": 2,
        "pending_count": 0,
    }
    first, second = (status_of(api, t) for t in tickets)
    assert first["status"] == "uploaded"
    assert (second["status"], second["error_reason"]["code"]) == ("error", "missing")


def test_the_notes_response_shape_for_two_uploads(api, uploaded):
    tickets = uploaded(n=2, confirm=False)
    reply = api.confirm(1, [t["image_id"] for t in tickets])
    note = {"message": "Successfully confirmed 2 uploads", "updated_count": 2, "total_requested": 2}
    assert reply.json == {**note, "pending_count": 0}


def test_ids_of_other_datasets_or_unknown_are_untouched_and_not_counted(api, uploaded):
    mine = uploaded(dataset_id=1, confirm=False)[0]
    theirs = uploaded(dataset_id=2, confirm=False, judge=False)[0]

    reply = api.confirm(1, [mine["image_id"], theirs["image_id"], 999])

    assert reply.json["updated_count"] == 1
    assert reply.json["total_requested"] == 3
    assert status_of(api, theirs)["status"] == "uploading"
    assert api.image("get_image", 999).status == 404


def test_confirming_again_counts_again_and_changes_nothing(api, uploaded):
    ticket = uploaded()[0]
    before = status_of(api, ticket)

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.json["updated_count"] == 1
    assert status_of(api, ticket) == before


def test_bytes_the_trigger_has_not_verified_are_never_counted_nor_marked_uploaded(api, processor):
    # HTML declared image/jpeg, confirmed right after its PUT, before (or without) the trigger.
    html = sample_images.HTML
    ticket = prepare(api, html)
    processor.put(ticket["s3_key"], html)

    reply = api.confirm(1, [ticket["image_id"]])

    assert (reply.json["updated_count"], reply.json["pending_count"]) == (0, 1)
    assert status_of(api, ticket)["status"] == "uploading"


@pytest.fixture
def confirm_in_background(api, monkeypatch):
    """Starts confirm in a thread and returns once it is waiting for verdicts (its first re-read)."""
    monkeypatch.setenv("CONFIRM_WAIT_SECONDS", "10")
    from uploads_core.settings import get_settings

    get_settings.cache_clear()
    waiting = threading.Event()
    original = images_table.get_many

    def get_many(ids, consistent=False):
        if consistent:
            waiting.set()
        return original(ids, consistent)

    monkeypatch.setattr(images_table, "get_many", get_many)

    def start(image_ids):
        result = {}
        thread = threading.Thread(target=lambda: result.update(reply=api.confirm(1, image_ids)))
        thread.start()
        assert waiting.wait(10), "confirm never started waiting"
        return thread, result

    return start


@pytest.mark.parametrize(
    ("data", "status", "counted"), [(sample_images.jpeg(), "uploaded", 1), (sample_images.HTML, "error", 0)]
)
def test_confirm_waits_for_the_verdict_of_an_object_present_but_not_judged(
    api, processor, confirm_in_background, data, status, counted
):
    ticket = prepare(api, data)
    record = processor.put(ticket["s3_key"], data)

    thread, result = confirm_in_background([ticket["image_id"]])
    processor.deliver(record)  # the verdict arrives while confirm waits
    thread.join(15)

    assert (result["reply"].json["updated_count"], result["reply"].json["pending_count"]) == (counted, 0)
    assert status_of(api, ticket)["status"] == status


def test_confirm_waits_for_the_verdict_on_a_retry_after_a_rejection(api, processor, confirm_in_background):
    good = sample_images.jpeg()
    ticket = prepare(api, good)
    processor.deliver(processor.put(ticket["s3_key"], sample_images.HTML[: len(good)].ljust(len(good))))
    assert status_of(api, ticket)["status"] == "error"
    retry = processor.put(ticket["s3_key"], good)  # through the same URL

    thread, result = confirm_in_background([ticket["image_id"]])
    processor.deliver(retry)
    thread.join(15)

    assert (result["reply"].json["updated_count"], result["reply"].json["pending_count"]) == (1, 0)


def test_what_is_still_unjudged_at_the_deadline_stays_uploading_and_is_pending(api, processor, monkeypatch):
    monkeypatch.setenv("CONFIRM_WAIT_SECONDS", "0.3")
    from uploads_core.settings import get_settings

    get_settings.cache_clear()
    data = sample_images.jpeg()
    ticket = prepare(api, data)
    processor.put(ticket["s3_key"], data)

    reply = api.confirm(1, [ticket["image_id"]])

    assert (reply.json["updated_count"], reply.json["pending_count"]) == (0, 1)
    assert status_of(api, ticket)["status"] == "uploading"


def test_a_verdict_written_after_the_head_wins_over_missing(api, processor, monkeypatch, invariants):
    data = sample_images.jpeg()
    ticket = prepare(api, data)
    original = images_bucket.head_many

    def head_then_upload(keys):
        found = original(keys)  # nothing there yet...
        processor.deliver(processor.put(ticket["s3_key"], data))  # ...then a PUT and its verdict
        return found

    monkeypatch.setattr(images_bucket, "head_many", head_then_upload)
    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.json["updated_count"] == 1
    image = status_of(api, ticket)
    assert (image["status"], image["error_reason"]) == ("uploaded", None)
    invariants(kept_uploaded=[ticket["image_id"]])


def test_a_late_upload_turns_missing_into_uploaded(api, processor):
    data = sample_images.jpeg()
    ticket = prepare(api, data)
    assert api.confirm(1, [ticket["image_id"]]).json["updated_count"] == 0
    assert status_of(api, ticket)["status"] == "error"

    processor.deliver(processor.put(ticket["s3_key"], data))

    assert api.confirm(1, [ticket["image_id"]]).json["updated_count"] == 1
    image = status_of(api, ticket)
    assert (image["status"], image["error_reason"]) == ("uploaded", None)


def test_one_head_object_per_unverified_image_and_they_run_concurrently(
    api, uploaded, aws_calls, monkeypatch
):
    tickets = uploaded(n=8, confirm=False, judge=False)
    running, peak, lock = 0, 0, threading.Lock()
    original = images_bucket._send_head

    def slow_head(client, url):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        try:
            return original(client, url)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(images_bucket, "_send_head", slow_head)
    aws_calls.clear()
    assert api.confirm(1, [t["image_id"] for t in tickets]).json["pending_count"] == 8
    assert aws_calls[("s3", "HeadObject")] == 8
    assert peak > 1


def test_verified_images_cost_no_head_object(api, uploaded, aws_calls):
    tickets = uploaded(n=3, confirm=False)
    aws_calls.clear()
    assert api.confirm(1, [t["image_id"] for t in tickets]).json["updated_count"] == 3
    assert aws_calls[("s3", "HeadObject")] == 0
    assert aws_calls[("dynamodb", "BatchGetItem")] == 1


def test_duplicate_ids_are_checked_once(api, uploaded, aws_calls):
    ticket = uploaded(confirm=False, judge=False)[0]
    aws_calls.clear()
    reply = api.confirm(1, [ticket["image_id"], ticket["image_id"]])
    assert reply.json["total_requested"] == 2
    assert reply.json["pending_count"] == 1
    assert aws_calls[("s3", "HeadObject")] == 1


def test_confirm_validates_its_body(api):
    for body, loc in [
        ({"image_ids": []}, ["body", "image_ids"]),
        ({"image_ids": [0]}, ["body", "image_ids", 0]),
        ({"image_ids": ["1"]}, ["body", "image_ids", 0]),
        ({"image_ids": list(range(1, 1002))}, ["body", "image_ids"]),
        ({}, ["body", "image_ids"]),
    ]:
        reply = api.call("confirm_upload", body=body)
        assert reply.status == 422, body
        assert reply.json["detail"][0]["loc"] == loc


def test_missing_objects_cost_one_listing_and_one_conditional_write_each(api, aws_calls):
    tickets = api.prepare(1, [jpeg_file(f"car{i}.jpg") for i in range(150)]).json["uploads"]
    aws_calls.clear()

    reply = api.confirm(1, [t["image_id"] for t in tickets])

    assert (reply.json["updated_count"], reply.json["pending_count"]) == (0, 0)
    assert dict(aws_calls) == {
        ("dynamodb", "BatchGetItem"): 2,
        ("s3", "ListObjectVersions"): 1,
        ("dynamodb", "UpdateItem"): 150,
    }
    assert {status_of(api, t)["status"] for t in tickets} == {"error"}


def test_a_large_batch_lists_its_dataset_instead_of_heading_each_object(api, uploaded, aws_calls):
    present = uploaded(n=60, confirm=False, judge=False)
    absent = api.prepare(1, [jpeg_file(f"gone{i}.jpg") for i in range(60)]).json["uploads"]
    aws_calls.clear()

    reply = api.confirm(1, [t["image_id"] for t in present + absent])

    assert (reply.json["updated_count"], reply.json["pending_count"]) == (0, 60)
    assert dict(aws_calls) == {
        ("dynamodb", "BatchGetItem"): 2,
        ("s3", "ListObjectVersions"): 1,
        ("dynamodb", "UpdateItem"): 60,
    }
    assert {status_of(api, t)["status"] for t in present} == {"uploading"}
    assert {status_of(api, t)["status"] for t in absent} == {"error"}


@pytest.fixture
def small_pages(monkeypatch):
    """Listing pages of 10 versions, worth it from `worth` answered keys: page boundaries with few objects."""
    monkeypatch.setattr(images_bucket, "_LIST_PAGE", 10)
    return lambda worth: monkeypatch.setattr(images_bucket, "_LIST_WORTH", worth)


def test_listed_objects_are_what_a_head_of_each_says(api, s3, bucket, small_pages, aws_calls):
    small_pages(worth=1)
    prefix = "datasets/5/images/"
    names = [f"{i:03d} é+ {i}.jpg" for i in range(40)]  # sorted as S3 sorts them; spaces, plus, accents
    for index, name in enumerate(names):
        for version in range(1 + index % 3):  # newer versions: the listing shows the oldest first too
            s3.put_object(Bucket=bucket, Key=prefix + name, Body=b"v%d" % version)
        if index % 5 == 4:  # the current "version" is a delete marker
            s3.delete_object(Bucket=bucket, Key=prefix + name)
    asked = [prefix + n for n in names] + [prefix + "015 never.jpg", prefix + "zzz after the last.jpg"]
    asked += ["datasets/50/images/" + names[0], "datasets/10/other.jpg"]  # not under the prefix: HEADed
    s3.put_object(Bucket=bucket, Key="datasets/10/other.jpg", Body=b"x")
    truth = {key: images_bucket.head(key) for key in asked}
    aws_calls.clear()

    found = images_bucket.current_objects(prefix, asked)

    def seen(answers: dict) -> dict:
        return {key: info and (info.version_id, info.size, info.etag) for key, info in answers.items()}

    assert seen(found) == seen(truth)
    assert sum(v is None for v in found.values()) == 11  # 8 delete markers, 2 never uploaded, 1 other dataset
    # 40 keys: 79 versions and 8 delete markers, 9 pages; the keys outside the prefix are HEADed.
    assert dict(aws_calls) == {("s3", "ListObjectVersions"): 9, ("s3", "HeadObject"): 2}


def test_listing_stops_where_pages_answer_too_few_keys_and_heads_the_rest(
    api, s3, bucket, small_pages, aws_calls
):
    small_pages(worth=3)
    prefix = "datasets/5/images/"
    keys = [f"{prefix}{i:03d}.jpg" for i in range(100)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"v")
    asked = keys[:12] + keys[50:54]  # a dense page, then sparse ones
    aws_calls.clear()

    found = images_bucket.current_objects(prefix, [*asked, prefix + "999 absent.jpg"])

    assert sorted(k for k, v in found.items() if v is not None) == sorted(asked)
    # Pages 1-2 answer 10 and 2 keys: listing stops after the second; 4 + 1 keys are HEADed.
    assert dict(aws_calls) == {("s3", "ListObjectVersions"): 2, ("s3", "HeadObject"): 5}


def test_a_small_batch_heads_its_objects_without_listing(api, s3, bucket, aws_calls):
    key = "datasets/5/images/a.jpg"
    s3.put_object(Bucket=bucket, Key=key, Body=b"v")
    aws_calls.clear()

    found = images_bucket.current_objects("datasets/5/images/", [key, key + "x"])

    assert (found[key] is not None, found[key + "x"]) == (True, None)
    assert dict(aws_calls) == {("s3", "HeadObject"): 2}


def test_a_verdict_after_the_listing_wins_over_missing_for_that_image_only(
    api, processor, aws_calls, monkeypatch, invariants
):
    data = sample_images.jpeg()
    tickets = api.prepare(1, [jpeg_file(f"car{i}.jpg", len(data)) for i in range(60)]).json["uploads"]
    late = tickets[1]
    original = images_bucket.current_objects

    def list_then_upload(prefix, keys):
        found = original(prefix, keys)  # nothing there yet...
        processor.deliver(processor.put(late["s3_key"], data))  # ...then one PUT and its verdict
        aws_calls.clear()
        return found

    monkeypatch.setattr(images_bucket, "current_objects", list_then_upload)
    reply = api.confirm(1, [t["image_id"] for t in tickets])

    # 60 conditional writes, one refused; then one consistent read of the refused record.
    assert dict(aws_calls) == {("dynamodb", "UpdateItem"): 60, ("dynamodb", "BatchGetItem"): 1}
    assert reply.json["updated_count"] == 1
    assert [status_of(api, t)["status"] for t in tickets[:3]] == ["error", "uploaded", "error"]
    invariants(kept_uploaded=[late["image_id"]])


class _Answers:
    """Answers the S3 client's HEADs with these statuses (or raises these errors) before moto does, in
    order; once they are used up, moto answers. Counts every HEAD sent."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.sent = 0

    def __call__(self, request, **kwargs):
        self.sent += 1
        if not self.answers:
            return None
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return AWSResponse(request.url, answer, {}, None)


@pytest.fixture
def s3_answers(monkeypatch):
    """Installs _Answers on the S3 client's `before-send` (where moto answers too), with no backoff wait."""
    monkeypatch.setattr(images_bucket.random, "random", lambda: 0.0)
    installed = []

    def install(*answers) -> _Answers:
        handler = _Answers(*answers)
        images_bucket._s3().meta.events.register_first("before-send.s3.HeadObject", handler)
        installed.append(handler)
        return handler

    yield install
    for handler in installed:
        images_bucket._s3().meta.events.unregister("before-send.s3.HeadObject", handler)


@pytest.mark.parametrize("status", [403, 400, 301, 200 + 1])
def test_only_a_404_makes_an_image_missing(api, s3_answers, status):
    ticket = api.prepare(1, [jpeg_file("a.jpg")]).json["uploads"][0]
    heads = s3_answers(status)

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.status == 500
    assert heads.sent == 1  # not transient: not retried
    assert status_of(api, ticket)["status"] == "uploading"


def test_transient_answers_are_retried_then_a_404_marks_missing(api, s3_answers, aws_calls, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    from uploads_core.settings import get_settings

    get_settings.cache_clear()
    ticket = api.prepare(1, [jpeg_file("a.jpg")]).json["uploads"][0]
    heads = s3_answers(503, EndpointConnectionError(endpoint_url="http://s3"), 500)
    aws_calls.clear()

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.status == 200
    assert heads.sent == 4 == aws_calls[("s3", "HeadObject")]  # 3 transient answers, then moto's 404
    assert status_of(api, ticket)["status"] == "error"


def test_retries_stop_after_the_settings_attempts_and_nothing_is_marked(api, s3_answers, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    from uploads_core.settings import get_settings

    get_settings.cache_clear()
    ticket = api.prepare(1, [jpeg_file("a.jpg")]).json["uploads"][0]
    heads = s3_answers(*[503] * 3, RuntimeError("a fourth attempt"))

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.status == 500
    assert heads.sent == 3
    assert status_of(api, ticket)["status"] == "uploading"


def test_connection_errors_are_retried_as_many_times_and_then_raised(api, s3_answers, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    from uploads_core.settings import get_settings

    get_settings.cache_clear()
    ticket = api.prepare(1, [jpeg_file("a.jpg")]).json["uploads"][0]
    heads = s3_answers(*[EndpointConnectionError(endpoint_url="http://s3")] * 2, RuntimeError("a third"))

    reply = api.confirm(1, [ticket["image_id"]])

    assert reply.status == 500
    assert heads.sent == 2
    assert status_of(api, ticket)["status"] == "uploading"
