"""Races between the S3 trigger, the API and repeated events, each interleaving forced with pause points.

The real handlers run in threads against one (moto) bucket and table; a pause point holds one of
them at a chosen call until the test lets it go. Every test ends with the invariants of
tests/invariants.py over the whole bucket (every version) and table.
"""

import threading

import pytest

from tests import sample_images
from tests.unit.conftest import jpeg_file
from uploads_core import hashes_table, images_bucket, images_table


class Pause:
    """Holds the thread that reaches it until `release()`."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self._go = threading.Event()

    def hold(self) -> None:
        self.reached.set()
        assert self._go.wait(20), "never released"

    def release(self) -> None:
        self._go.set()


def pause_before(monkeypatch, owner, name: str, when=lambda *a, **k: True) -> Pause:
    """The first call of owner.name for which `when(*args)` holds waits at a Pause before running."""
    pause, original = Pause(), getattr(owner, name)

    def paused(*args, **kwargs):
        if not pause.reached.is_set() and when(*args, **kwargs):
            pause.hold()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, paused)
    return pause


def pause_before_verdict(monkeypatch, when=lambda *a, **k: True) -> Pause:
    """A pause before the first verdict for which `when(image, changes, sequencer)` holds: a rejection
    (images_table.record_verdict) or an acceptance (hashes_table.record_upload, which claims the hash)."""
    pause = Pause()
    for owner, name in ((images_table, "record_verdict"), (hashes_table, "record_upload")):
        original = getattr(owner, name)

        def paused(*args, _original=original, **kwargs):
            if not pause.reached.is_set() and when(*args, **kwargs):
                pause.hold()
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, paused)
    return pause


class Run:
    """A call in its own thread; `result()` joins it and returns (or raises) what the call did."""

    def __init__(self, fn, *args) -> None:
        self._outcome: dict = {}
        self._thread = threading.Thread(target=self._run, args=(fn, *args))
        self._thread.start()

    def _run(self, fn, *args) -> None:
        try:
            self._outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the test thread
            self._outcome["error"] = exc

    def result(self):
        self._thread.join(30)
        assert not self._thread.is_alive(), "still running"
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


def outcome(reply: dict) -> str:
    return reply["processed"][0]["result"]


def version_of(record: dict) -> str:
    return record["s3"]["object"]["versionId"]


def for_version(version: str):
    """`when` of a pause on record_verdict: the verdict about this object version."""
    return lambda image, changes, *rest: changes.get("object_version") == version


@pytest.fixture
def image(api):
    """A prepared image for a 2,000-byte JPEG, and ways to make files of exactly that size."""
    good = sample_images.jpeg_of_size(2000)
    ticket = api.prepare(1, [jpeg_file("car.jpg", len(good))]).json["uploads"][0]
    return ticket, good


def other_jpeg(size: int) -> bytes:
    base = sample_images.jpeg(30, 20)  # other pixels, padded to the same size with a comment
    return (
        base[:2]
        + b"\xff\xfe"
        + (size - len(base) - 2).to_bytes(2, "big")
        + b"\0" * (size - len(base) - 4)
        + base[2:]
    )


def html(size: int) -> bytes:
    return sample_images.HTML[:size].ljust(size, b" ")


def corrupt(good: bytes) -> bytes:
    return good[: len(good) - 300] + b"\0" * 300  # same size, the scan data destroyed


def fetch(url: str) -> bytes:
    import requests

    return requests.get(url, timeout=10).content


# --- 1. Same URL, two PUTs ----------------------------------------------------------------------


INTERLEAVINGS = ["first-then-second", "second-then-first", "first-verdict-last", "second-verdict-last"]


@pytest.mark.parametrize("order", INTERLEAVINGS)
def test_a_corrupt_put_then_a_good_one_ends_uploaded_with_the_good_bytes(
    api, processor, image, invariants, monkeypatch, order
):
    ticket, good = image
    first = processor.put(ticket["s3_key"], corrupt(good))
    second = processor.put(ticket["s3_key"], good)

    if order == "first-then-second":
        assert outcome(processor.deliver(first)) == "rejected"
        assert outcome(processor.deliver(second)) == "uploaded"
    elif order == "second-then-first":
        assert outcome(processor.deliver(second)) == "uploaded"
        assert outcome(processor.deliver(first)) == "discarded"
    else:
        late, early = (first, second) if order == "first-verdict-last" else (second, first)
        pause = pause_before_verdict(monkeypatch, for_version(version_of(late)))
        held = Run(processor.deliver, late)
        assert pause.reached.wait(10)
        processor.deliver(early)
        pause.release()
        held.result()

    record = api.image("get_image", ticket["image_id"]).json
    assert (record["status"], record["width"], record["error_reason"]) == ("uploaded", 8, None)
    download = api.image("get_download_url", ticket["image_id"]).json["download_url"]
    assert fetch(download) == good
    invariants(kept_uploaded=[ticket["image_id"]])


@pytest.mark.parametrize("order", INTERLEAVINGS)
def test_two_good_puts_end_with_exactly_one_verified_version_and_one_thumbnail(
    api, processor, image, invariants, monkeypatch, order
):
    ticket, good = image
    first = processor.put(ticket["s3_key"], good)
    second = processor.put(ticket["s3_key"], other_jpeg(len(good)))

    if order in ("first-then-second", "second-then-first"):
        for record in (first, second) if order == "first-then-second" else (second, first):
            processor.deliver(record)
    else:
        late, early = (first, second) if order == "first-verdict-last" else (second, first)
        pause = pause_before_verdict(monkeypatch, for_version(version_of(late)))
        held = Run(processor.deliver, late)
        assert pause.reached.wait(10)
        assert outcome(processor.deliver(early)) == "uploaded"
        pause.release()
        assert outcome(held.result()) == "discarded"

    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"
    invariants(kept_uploaded=[ticket["image_id"]])


# --- 2. `uploaded` is final ---------------------------------------------------------------------


@pytest.mark.parametrize("later", [other_jpeg, html], ids=["another-jpeg", "html"])
def test_a_put_after_uploaded_is_discarded_and_the_verified_bytes_stay(
    api, processor, image, invariants, aws_calls, later
):
    ticket, good = image
    processor.deliver(processor.put(ticket["s3_key"], good))
    before = api.image("get_image", ticket["image_id"]).json

    record = processor.put(ticket["s3_key"], later(len(good)))
    aws_calls.clear()
    assert outcome(processor.deliver(record)) == "discarded"
    # Discarded unread: a client re-PUTting through a verified image's URL costs no decoding.
    assert aws_calls[("s3", "GetObject")] == aws_calls[("s3", "PutObject")] == 0

    assert api.image("get_image", ticket["image_id"]).json == before
    assert fetch(api.image("get_download_url", ticket["image_id"]).json["download_url"]) == good
    items = invariants(kept_uploaded=[ticket["image_id"]])
    assert len(items) == 1


def test_an_older_version_never_turns_a_later_rejection_into_uploaded(
    api, processor, image, invariants, monkeypatch
):
    # The good first PUT's invocation read the record before the bad second PUT was rejected.
    ticket, good = image
    older = processor.put(ticket["s3_key"], good)
    newer = processor.put(ticket["s3_key"], html(len(good)))
    pause = pause_before(
        monkeypatch, images_bucket, "open_version", lambda key, version: version == version_of(older)
    )
    held = Run(processor.deliver, older)
    assert pause.reached.wait(10)
    assert outcome(processor.deliver(newer)) == "rejected"
    pause.release()

    assert outcome(held.result()) == "discarded"
    record = api.image("get_image", ticket["image_id"]).json
    assert (record["status"], record["error_reason"]["code"]) == ("error", "not_an_image")
    invariants()


# --- 6. Thumbnails: duplicates, crashes, deletion -------------------------------------------------


def test_a_repeated_event_that_loses_removes_its_own_thumbnail(
    api, processor, image, invariants, monkeypatch
):
    ticket, good = image
    record = processor.put(ticket["s3_key"], good)
    # The second delivery has read the record (still `uploading`) when the first one runs to the end.
    pause = pause_before(monkeypatch, images_bucket, "open_version")
    held = Run(processor.deliver, record)
    assert pause.reached.wait(10)
    assert outcome(processor.deliver(record)) == "uploaded"
    pause.release()

    assert outcome(held.result()) == "stale"
    invariants(kept_uploaded=[ticket["image_id"]])


def test_concurrent_repeats_of_one_event_leave_one_thumbnail(api, processor, image, invariants, monkeypatch):
    ticket, good = image
    record = processor.put(ticket["s3_key"], good)
    both, one_at_a_time = threading.Barrier(2, timeout=10), threading.Lock()
    original = images_table.record_verdict

    def together(*args, **kwargs):
        both.wait()  # both have inspected and written a thumbnail
        with one_at_a_time:  # DynamoDB applies conditional writes of one item atomically; moto does not
            return original(*args, **kwargs)

    monkeypatch.setattr(images_table, "record_verdict", together)
    runs = [Run(processor.deliver, record) for _ in range(2)]

    assert sorted(outcome(run.result()) for run in runs) == ["stale", "uploaded"]
    invariants(kept_uploaded=[ticket["image_id"]])


def test_a_thumbnail_left_by_an_invocation_that_died_is_removed_by_the_next(
    api, processor, image, invariants, monkeypatch
):
    from upload_processor.handler import RecordsFailed

    ticket, good = image
    record = processor.put(ticket["s3_key"], good)
    original = hashes_table.record_upload
    monkeypatch.setattr(hashes_table, "record_upload", lambda *a, **k: (_ for _ in ()).throw(TimeoutError()))
    with pytest.raises(RecordsFailed):
        processor.deliver(record)  # its thumbnail is written, its verdict never is
    monkeypatch.setattr(hashes_table, "record_upload", original)

    assert outcome(processor.deliver(record)) == "uploaded"  # Lambda's retry
    invariants(kept_uploaded=[ticket["image_id"]])


def test_a_rejection_cut_short_is_finished_by_the_repeated_event(
    api, processor, image, invariants, monkeypatch
):
    from upload_processor.handler import RecordsFailed

    ticket, good = image
    record = processor.put(ticket["s3_key"], html(len(good)))
    original = images_bucket.delete_version
    monkeypatch.setattr(images_bucket, "delete_version", lambda *a: (_ for _ in ()).throw(TimeoutError()))
    with pytest.raises(RecordsFailed):
        processor.deliver(record)  # verdict written, version not yet deleted
    monkeypatch.setattr(images_bucket, "delete_version", original)

    assert outcome(processor.deliver(record)) == "stale"
    assert api.image("get_image", ticket["image_id"]).json["status"] == "error"
    invariants()


def test_a_delete_while_the_trigger_judges_leaves_nothing(api, processor, image, invariants, monkeypatch):
    ticket, good = image
    record = processor.put(ticket["s3_key"], good)
    # The trigger has read the bytes and written its thumbnail when the DELETE runs to its end.
    pause = pause_before_verdict(monkeypatch)
    held = Run(processor.deliver, record)
    assert pause.reached.wait(10)
    assert api.image("delete_image", ticket["image_id"]).status == 200
    pause.release()

    assert outcome(held.result()) == "discarded"
    assert invariants() == []
    assert images_bucket.delete_everything(prefixes=["datasets/", "thumbnails/"]) == 0


def test_a_trigger_that_finishes_while_a_delete_runs_leaves_nothing(
    api, processor, image, invariants, monkeypatch
):
    ticket, good = image
    record = processor.put(ticket["s3_key"], good)
    # The trigger read the bytes before the DELETE's first sweep, and writes its thumbnail and its
    # verdict after that sweep but before the record is deleted.
    trigger = pause_before(monkeypatch, images_bucket, "put_file")
    judging = Run(processor.deliver, record)
    assert trigger.reached.wait(10)
    delete = pause_before(monkeypatch, hashes_table, "delete_image")
    deleting = Run(api.image, "delete_image", ticket["image_id"])
    assert delete.reached.wait(10)
    trigger.release()
    assert outcome(judging.result()) == "uploaded"
    delete.release()

    assert deleting.result().status == 200
    assert invariants() == []
    assert images_bucket.delete_everything(prefixes=["datasets/", "thumbnails/"]) == 0


def test_a_put_through_the_url_of_a_deleted_image_is_removed_as_an_orphan(api, processor, image, invariants):
    ticket, good = image
    assert api.image("delete_image", ticket["image_id"]).status == 200
    assert outcome(processor.deliver(processor.put(ticket["s3_key"], good))) == "orphan_deleted"
    assert invariants() == []


def test_rejected_bytes_leave_no_version_behind(api, processor, image, invariants):
    ticket, good = image
    for data in (html(len(good)), corrupt(good)):
        assert outcome(processor.deliver(processor.put(ticket["s3_key"], data))) == "rejected"
    assert invariants()[0]["status"]["S"] == "error"
    assert images_bucket.delete_everything(prefixes=["datasets/"]) == 0


def test_the_trigger_reads_exactly_the_version_of_its_event(api, processor, image, monkeypatch):
    # A first PUT's event is handled after a second PUT: the verdict is about the first bytes.
    ticket, good = image
    first = processor.put(ticket["s3_key"], html(len(good)))
    processor.put(ticket["s3_key"], good)
    assert outcome(processor.deliver(first)) == "rejected"
    assert api.image("get_image", ticket["image_id"]).json["error_reason"]["code"] == "not_an_image"


def test_a_failed_delete_keeps_the_record_so_that_it_can_be_retried(
    api, processor, image, invariants, monkeypatch
):
    ticket, good = image
    processor.deliver(processor.put(ticket["s3_key"], good))
    original = images_bucket.delete_everything
    monkeypatch.setattr(
        images_bucket, "delete_everything", lambda *a, **k: (_ for _ in ()).throw(TimeoutError())
    )
    assert api.image("delete_image", ticket["image_id"]).status == 500
    assert api.image("get_image", ticket["image_id"]).json["status"] == "uploaded"
    invariants(kept_uploaded=[ticket["image_id"]])

    monkeypatch.setattr(images_bucket, "delete_everything", original)
    assert api.image("delete_image", ticket["image_id"]).status == 200
    assert invariants() == []
