"""The CLI learns the batch's verdicts from confirm-upload's answers, not from listings per poll."""

import time
from pathlib import Path

from rich.progress import Progress

from image_uploads_cli import upload
from image_uploads_cli.scan import LocalFile
from image_uploads_cli.upload import Uploader


class FakeApi:
    """confirm-upload still waits for one verdict twice, then for none."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.pending = [1, 1, 0]

    def confirm(self, dataset: int, image_ids: list[int]) -> dict:
        self.calls.append(("confirm", time.monotonic()))
        return {"updated_count": 2, "total_requested": 2, "pending_count": self.pending.pop(0)}

    def images(self, dataset: int, status: str | None = None):
        self.calls.append((f"images {status}", time.monotonic()))
        return iter([])


def test_verdicts_come_from_confirm_asked_at_most_once_a_second(monkeypatch):
    sleeps = []
    monkeypatch.setattr(upload.time, "sleep", sleeps.append)
    api = FakeApi()
    uploader = Uploader(api, 1, 1, 30.0, Progress(disable=True))
    uploader.task = uploader.progress.add_task("x")
    file = LocalFile(Path("a.jpg"), "a.jpg", 10, "image/jpeg")
    slots = [upload._Slot(file, 1, "u", 0.0, sent=True), upload._Slot(file, 2, "u", 0.0, sent=True)]

    outcomes = uploader._verdicts(slots)

    assert [name for name, _ in api.calls] == ["confirm", "confirm", "confirm", "images error"]
    assert sleeps == [1.0, 1.0]
    assert [o.status for o in outcomes] == ["uploaded", "uploaded"]


class Clock:
    """time.monotonic and time.sleep of the upload module: sleeping moves it on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def waited(monkeypatch, pending: list[int], wait: float) -> tuple[int, float]:
    """How many confirm-uploads the CLI asked, and how long it waited, for these pending counts."""
    clock = Clock()
    monkeypatch.setattr(upload.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(upload.time, "sleep", clock.sleep)
    api = FakeApi()
    api.pending = list(pending)
    uploader = Uploader(api, 1, 1, wait, Progress(disable=True))
    uploader.task = uploader.progress.add_task("x")
    file = LocalFile(Path("a.jpg"), "a.jpg", 10, "image/jpeg")
    uploader._verdicts([upload._Slot(file, 1, "u", 0.0, sent=True)])
    return sum(name == "confirm" for name, _ in api.calls), clock.now - 1000.0


def test_the_wait_goes_on_while_verdicts_keep_coming(monkeypatch):
    # A busy trigger: one verdict every 2 s, for 10 s, with a 3 s wait. All are waited for.
    assert waited(monkeypatch, [5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0], wait=3.0) == (11, 10.0)


def test_the_wait_ends_after_wait_seconds_without_a_new_verdict(monkeypatch):
    # Two verdicts, then none: it stops 3 s after the last one came.
    assert waited(monkeypatch, [4, 3, 2, 2, 2, 2, 2, 2, 2, 2], wait=3.0) == (6, 5.0)
