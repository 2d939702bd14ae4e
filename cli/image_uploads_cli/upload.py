"""The bulk upload: prepare by the API's batches, concurrent PUTs, the S3 trigger's verdicts, confirm."""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import batched
from pathlib import Path

import requests
from rich.progress import Progress, TaskID

from image_uploads_cli.api import Api, ApiError, ApiUnreachable
from image_uploads_cli.scan import LocalFile, Refused, scan

PUT_ATTEMPTS = 3
EXPIRY_MARGIN = 60  # seconds: re-prepare rather than start a PUT on a URL about to expire


HASH_WORKERS = 2  # files hashed at once, ahead of the batches being uploaded


@dataclass
class Outcome:
    file: LocalFile
    status: str  # uploaded | unverified | already | rejected | rejected before | failed
    image_id: int | None = None
    reason: str = ""


@dataclass
class Plan:
    to_send: list[LocalFile]
    already: list[LocalFile]  # found in the dataset by content (a dry run's lookup)
    refused: list[Refused]
    limit: int | None = None


@dataclass
class Summary:
    plan: Plan
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        problems = ("rejected", "rejected before", "failed")
        return not self.interrupted and not any(o.status in problems for o in self.outcomes)


def plan_upload(api: Api, dataset: int, root: Path, limit: int | None) -> Plan:
    """The folder judged by the API's own rules (`GET /limits`). What is in the dataset already is known
    by content, as the files are hashed during the upload (or by `dry_run`)."""
    files, refused = scan(root, api.limits())
    return Plan(files, [], refused, limit)


def _hashed(file: LocalFile) -> LocalFile:
    try:
        return file.hashed()
    except OSError:  # moved or unreadable since the scan: its PUT will say so
        return file


def hashed(files: list[LocalFile]) -> Iterator[LocalFile]:
    """The files with their SHA-256, in order, hashed by a few threads ahead of whoever consumes them."""
    pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="sha256")
    try:
        yield from pool.map(_hashed, files)
    finally:  # an interrupted run does not hash the rest of the folder first
        pool.shutdown(wait=False, cancel_futures=True)


def in_dataset(api: Api, dataset: int, files: list[LocalFile]) -> set[str]:
    """The hashes of these (hashed) files that an `uploaded` image of the dataset holds."""
    found: set[str] = set()
    hashes = dict.fromkeys(f.sha256 for f in files if f.sha256)
    for chunk in batched(hashes, api.limits().max_lookup, strict=False):
        matches = api.lookup(dataset, list(chunk))
        found |= {sha for sha, match in matches.items() if match["status"] == "uploaded"}
    return found


def dry_run(api: Api, dataset: int, plan: Plan) -> Plan:
    """The plan with the files the dataset holds already (by content) set apart; nothing is sent."""
    files = list(hashed(plan.to_send))
    done = in_dataset(api, dataset, files)
    to_send = [f for f in files if f.sha256 is None or f.sha256 not in done]
    already = [f for f in files if f.sha256 in done]
    return Plan(to_send[: plan.limit] if plan.limit is not None else to_send, already, plan.refused)


class _Reader:
    """A file body for requests that advances the byte progress as the socket takes the chunks."""

    def __init__(self, file: LocalFile, advance: Callable[[int], None]) -> None:
        self._f = file.path.open("rb")
        self._left = file.size
        self._advance = advance
        self.sent = 0

    def __len__(self) -> int:
        return self._left

    def __iter__(self) -> Iterator[bytes]:  # requests streams only bodies that look iterable
        return iter(lambda: self.read(65536), b"")

    def read(self, size: int = -1) -> bytes:
        chunk = self._f.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(chunk)
        self.sent += len(chunk)
        self._advance(len(chunk))
        return chunk

    def close(self) -> None:
        self._f.close()


@dataclass
class _Slot:
    """One file of a batch and its current reservation (replaced when its URL expires)."""

    file: LocalFile
    image_id: int
    url: str
    deadline: float
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    sent: bool = False


class Uploader:
    def __init__(self, api: Api, dataset: int, concurrency: int, wait: float, progress: Progress) -> None:
        self.api = api
        self.dataset = dataset
        self.concurrency = concurrency
        self.wait = wait
        self.progress = progress
        self.task: TaskID | None = None
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._files_done = 0

    @property
    def files_sent(self) -> int:
        """Files PUT so far (stored; the S3 trigger judges them whatever happens to this run)."""
        return self._files_done

    def run(self, plan: Plan) -> Summary:
        summary = Summary(plan)
        self.task = self.progress.add_task(
            "uploading", total=sum(f.size for f in plan.to_send), files=0, nfiles=len(plan.to_send)
        )
        left = plan.limit
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="put") as pool:
            try:
                # Files are hashed ahead while a batch (the API's largest prepare-upload) is sent.
                for batch in batched(hashed(plan.to_send), self.api.limits().max_batch, strict=False):
                    done = in_dataset(self.api, self.dataset, list(batch))
                    for file in batch:
                        if file.sha256 in done:
                            summary.outcomes.append(Outcome(file, "already", None, "already in the dataset"))
                            self._advance(file.size)
                    fresh = [f for f in batch if f.sha256 is None or f.sha256 not in done]
                    if left is not None:
                        fresh, left = fresh[:left], max(0, left - len(fresh))
                    if fresh:
                        summary.outcomes += self._batch(pool, fresh)
                self._phase("done")
            except KeyboardInterrupt:
                # Running PUTs have finished; the files sent are judged by the S3 trigger all the same,
                # and a new run skips them once uploaded.
                summary.interrupted = True
        return summary

    # -- one batch -----------------------------------------------------------------------------

    def _batch(self, pool: ThreadPoolExecutor, files: list[LocalFile]) -> list[Outcome]:
        self._phase("preparing")
        answered, slots = [], []
        for file, ticket in zip(files, self._prepare(files), strict=True):
            if ticket.get("duplicate_of") is not None:  # the same bytes are in the dataset (or this batch)
                reason = f"already in the dataset (#{ticket['duplicate_of']})"
                answered.append(Outcome(file, "already", ticket["duplicate_of"], reason))
                self._advance(file.size)
            elif ticket.get("rejected_before") is not None:  # the server refused these bytes before
                rejected = ticket["rejected_before"]
                reason = f"{rejected['code']}: {rejected['message']}"
                answered.append(Outcome(file, "rejected before", ticket["image_id"], reason))
                self._advance(file.size)
            else:
                slots.append(self._reserve(file, ticket))
        if not slots:
            return answered
        self._phase("uploading")
        try:
            list(pool.map(self._put, slots))
        except KeyboardInterrupt:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)  # let running PUTs end before cleaning up
            self._forget([s for s in slots if not s.sent])
            raise
        # Failed files: their reservations would only wait a day for the stale-upload cleanup.
        failed = [s for s in slots if not s.sent]
        self._forget(failed)
        outcomes = [Outcome(s.file, "failed", None, s.error or "not sent") for s in failed]
        sent = [s for s in slots if s.sent]
        return answered + outcomes + (self._verdicts(sent) if sent else [])

    def _prepare(self, files: list[LocalFile]) -> list[dict]:
        return self.api.prepare(self.dataset, [f.declaration() for f in files])

    @staticmethod
    def _reserve(file: LocalFile, ticket: dict) -> _Slot:
        deadline = time.monotonic() + ticket["expires_in"] - EXPIRY_MARGIN
        headers = ticket.get("upload_headers") or {}
        return _Slot(file, ticket["image_id"], ticket["upload_url"], deadline, headers)

    def _renew(self, slot: _Slot) -> None:
        """A fresh reservation for one file; the old record is deleted (best effort) unless the API gave
        the same image back (its bytes' URL still had time to live: a fresh URL for it)."""
        old = slot.image_id
        ticket = self._prepare([slot.file])[0]
        if ticket.get("upload_url") is None:  # uploaded meanwhile (another client), or refused before
            raise ApiError(409, "the file's bytes were judged meanwhile; run again to see the verdict")
        fresh = self._reserve(slot.file, ticket)
        slot.image_id, slot.url, slot.deadline, slot.headers = (
            fresh.image_id,
            fresh.url,
            fresh.deadline,
            fresh.headers,
        )
        if old != fresh.image_id:
            self._forget_ids([old])

    def _forget(self, slots: list[_Slot]) -> None:
        self._forget_ids([s.image_id for s in slots])

    def _forget_ids(self, ids: list[int]) -> None:
        for image_id in ids:
            # Best effort: the stale-upload cleanup would remove it within a day anyway.
            with suppress(ApiError, ApiUnreachable):
                self.api.delete(image_id)

    # -- the PUT of one file, with retries -----------------------------------------------------

    def _put(self, slot: _Slot) -> None:
        for attempt in range(PUT_ATTEMPTS):
            if self.stop.is_set():
                slot.error = "interrupted"
                return
            retry_now = self._put_once(slot, renew=time.monotonic() > slot.deadline)
            if slot.sent or not retry_now:
                break
            time.sleep(0.5 * 2**attempt)
        if slot.sent:
            self._file_done()

    def _put_once(self, slot: _Slot, renew: bool) -> bool:
        """One attempt; True when another attempt may succeed."""
        try:
            if renew:
                self._renew(slot)
        except (ApiError, ApiUnreachable) as exc:
            slot.error = f"could not get a fresh upload URL: {exc}"
            return isinstance(exc, ApiUnreachable)
        try:
            body = _Reader(slot.file, self._advance)
        except OSError as exc:  # moved or unreadable since the scan
            slot.error = f"cannot read the file: {exc.strerror}"
            return False
        try:
            response = self.api.put(slot.url, body, slot.file.size, slot.file.mime_type, slot.headers)
        except requests.RequestException as exc:
            slot.error = f"network error: {type(exc).__name__}"
            return True
        finally:
            body.close()
        if response.ok:
            slot.sent, slot.error = True, None
            return False
        self._advance(-body.sent)  # these bytes will be sent again, or never count
        slot.error = f"PUT answered HTTP {response.status_code}"
        if response.status_code == 403:  # expired or refused signature: a new URL may do
            slot.deadline = 0
            return True
        return response.status_code >= 500 or response.status_code == 429

    def _phase(self, name: str) -> None:
        assert self.task is not None
        self.progress.update(self.task, description=name)

    def _advance(self, size: int) -> None:
        assert self.task is not None
        self.progress.advance(self.task, size)

    def _file_done(self) -> None:
        with self._lock:
            self._files_done += 1
            assert self.task is not None
            self.progress.update(self.task, files=self._files_done)

    # -- verdicts and confirm ------------------------------------------------------------------

    def _verdicts(self, sent: list[_Slot]) -> list[Outcome]:
        """Confirms the batch, which waits (bounded) for the S3 trigger's verdicts on it.

        Only the trigger's verdict makes an image `uploaded` (confirm marks absent objects `error`
        and counts the verified ones): the summary tells what it decided.
        """
        self._phase("checking")
        ids = {s.image_id for s in sent}
        # confirm-upload says how many verdicts it still waits for: asked again at most once a second,
        # with no listing per poll (those competed with the trigger for the API). `wait` is the longest
        # time without a new verdict: a busy trigger that is still judging the batch is waited for.
        deadline, before = time.monotonic() + self.wait, None
        while True:
            waiting = self.api.confirm(self.dataset, sorted(ids)).get("pending_count", 0)
            if before is not None and waiting < before:
                deadline = time.monotonic() + self.wait
            if not waiting or time.monotonic() >= deadline:
                break
            before = waiting
            time.sleep(1.0)
        pending = (
            ids & {i["id"] for i in self.api.images(self.dataset, status="uploading")} if waiting else set()
        )
        errors = {i["id"]: i for i in self.api.images(self.dataset, status="error") if i["id"] in ids}
        late = {image_id: self.api.get(image_id) for image_id in pending if image_id not in errors}
        return [self._outcome(s, errors.get(s.image_id) or late.get(s.image_id)) for s in sent]

    @staticmethod
    def _outcome(slot: _Slot, image: dict | None) -> Outcome:
        if image is None:  # left `uploading` and not in error: the trigger accepted it
            return Outcome(slot.file, "uploaded", slot.image_id)
        if image["status"] == "error":
            reason = image.get("error_reason") or {
                "code": "missing",
                "message": "the stored object is missing or differs from the declaration",
            }
            return Outcome(slot.file, "rejected", slot.image_id, f"{reason['code']}: {reason['message']}")
        if image["status"] == "uploaded":  # verified just after the wait ended
            return Outcome(slot.file, "uploaded", slot.image_id)
        # Still `uploading`: stored, not verified yet (a later run or `ls` shows the verdict).
        return Outcome(
            slot.file, "unverified", slot.image_id, "stored; the S3 trigger had not inspected it yet"
        )
