"""The bulk-upload CLI (cli/image_uploads_cli) against the local stack, run in-process through main()."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from image_uploads_cli.__main__ import main
from image_uploads_cli.api import Api
from tests import sample_images
from tests.integration.conftest import ROOT

IMAGES = {
    "a.jpg": sample_images.jpeg(64, 48),
    "b.png": sample_images.png(40, 30),
    "c.gif": sample_images.gif(30, 20),
    "d.webp": sample_images.webp(50, 40),
    "sub/voiture été (1).jpg": sample_images.jpeg(32, 24),
    "sub/deeper/e.png": sample_images.png(10, 10),
}
FAKE = "sub/page.jpg"  # HTML named .jpg: sent, then rejected by the S3 trigger
REFUSED = {"notes.txt": b"not an image", "empty.png": b""}  # never sent


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    files = {**IMAGES, FAKE: sample_images.HTML, **REFUSED, ".hidden.jpg": sample_images.jpeg()}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def cli(capsys, stack, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*args, "--api", stack.api])
    out, err = capsys.readouterr()
    return code, out, err


def upload(capsys, stack, folder: Path, dataset: int, *extra: str) -> tuple[int, str]:
    code, out, _ = cli(
        capsys, stack, "upload", str(folder), "--dataset", str(dataset), "--no-progress", *extra
    )
    return code, out


def records(stack, dataset: int) -> list[dict]:
    return list(Api(stack.api).images(dataset))


def test_upload_a_folder_then_a_second_run_uploads_nothing_new(stack, capsys, folder):
    dataset = stack.dataset()

    code, out = upload(capsys, stack, folder, dataset)

    assert code == 1, out  # the HTML file was rejected
    assert "uploaded 6, unverified 0, already uploaded 0, rejected 1, failed 0, skipped locally 2" in out
    images = {i["filename"]: i for i in records(stack, dataset)}
    assert set(images) == {*IMAGES, FAKE}
    for name, data in IMAGES.items():
        assert (images[name]["status"], images[name]["file_size"]) == ("uploaded", len(data))
    assert (images["a.jpg"]["width"], images["a.jpg"]["height"]) == (64, 48)
    assert images[FAKE]["status"] == "error"
    assert images[FAKE]["error_reason"]["code"] == "not_an_image"
    assert "not_an_image" in out

    code, out = upload(capsys, stack, folder, dataset)

    assert "uploaded 0, unverified 0, already uploaded 6, rejected 1" in out
    again = records(stack, dataset)
    assert sorted(i["id"] for i in again if i["status"] == "uploaded") == sorted(
        i["id"] for i in images.values() if i["status"] == "uploaded"
    )


def test_an_interrupted_upload_resumes_where_it_stopped(stack, capsys, folder, monkeypatch):
    dataset = stack.dataset()
    (folder / FAKE).unlink()

    # A first run stopped after two files (--limit), then one interrupted by Ctrl-C after the third PUT.
    assert upload(capsys, stack, folder, dataset, "--limit", "2")[0] == 0
    assert len(records(stack, dataset)) == 2
    real_put, calls = Api.put, []

    def put_then_interrupt(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(Api, "put", put_then_interrupt)
    code, out = upload(capsys, stack, folder, dataset, "--concurrency", "1")
    assert code == 130
    assert "interrupted" in out
    # The reservations never sent were withdrawn: no record waits a day for the cleanup.
    assert len(records(stack, dataset)) == 3
    monkeypatch.undo()

    code, out = upload(capsys, stack, folder, dataset)

    assert code == 0, out
    assert "uploaded 3, unverified 0, already uploaded 3" in out
    images = records(stack, dataset)
    assert sorted(i["filename"] for i in images) == sorted(IMAGES)
    assert {i["status"] for i in images} == {"uploaded"}


def test_failed_puts_are_retried_with_a_fresh_url_after_a_403(stack, capsys, folder, monkeypatch):
    dataset = stack.dataset()
    (folder / FAKE).unlink()
    real_put, urls = Api.put, []

    class Refusal:
        ok, status_code = False, 0

    def flaky_put(self, url, body, size, mime_type):
        urls.append(url)
        if len(urls) in (1, 2):  # an expired URL (403), then S3 unavailable (503)
            body.read()
            refusal = Refusal()
            refusal.status_code = 403 if len(urls) == 1 else 503
            return refusal
        return real_put(self, url, body, size, mime_type)

    monkeypatch.setattr(Api, "put", flaky_put)
    code, out = upload(capsys, stack, folder, dataset, "--concurrency", "1")

    assert code == 0, out
    assert len(urls) == len(IMAGES) + 2
    assert urls[1] != urls[0]  # the 403 got a new reservation; the 503 was retried as is
    images = records(stack, dataset)
    assert len(images) == len(IMAGES)  # the replaced reservation was deleted
    assert {i["status"] for i in images} == {"uploaded"}


def test_dry_run_sends_nothing_and_magic_refuses_the_disguised_file(stack, capsys, folder):
    dataset = stack.dataset()

    code, out = upload(capsys, stack, folder, dataset, "--dry-run")
    assert code == 0
    assert "would send 7" in out
    assert "refused locally 2" in out
    assert "notes.txt" in out

    code, out = upload(capsys, stack, folder, dataset, "--dry-run", "--magic")
    assert "would send 6" in out
    assert "refused locally 3" in out
    assert records(stack, dataset) == []


def test_ls_get_rm(stack, capsys, folder):
    dataset = stack.dataset()
    (folder / FAKE).unlink()
    assert upload(capsys, stack, folder, dataset)[0] == 0
    image = next(i for i in records(stack, dataset) if i["filename"] == "a.jpg")

    code, out, _ = cli(capsys, stack, "ls", "--dataset", str(dataset), "--status", "uploaded")
    assert code == 0
    assert "a.jpg" in out
    assert "64x48" in out
    assert f"{len(IMAGES)} image(s)" in out

    code, out, _ = cli(capsys, stack, "get", str(image["id"]))
    assert code == 0
    assert json.loads(out)["filename"] == "a.jpg"

    code, out, _ = cli(capsys, stack, "rm", str(image["id"]))
    assert (code, out.strip()) == (0, f"deleted {image['id']}")
    code, _, err = cli(capsys, stack, "get", str(image["id"]))
    assert code == 1
    assert "404" in err
    assert len(records(stack, dataset)) == len(IMAGES) - 1


def test_an_unreachable_api_is_one_line_and_exit_2(capsys, tmp_path):
    code = main(["ls", "--dataset", "1", "--api", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["error: cannot reach the API at http://127.0.0.1:9 (ConnectionError)"]


def test_python_dash_m_runs_the_cli(stack):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "cli"), "IMAGE_UPLOADS_API": stack.api}
    result = subprocess.run(
        [sys.executable, "-m", "image_uploads_cli", "ls", "--dataset", str(stack.dataset())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "0 image(s)" in result.stdout
