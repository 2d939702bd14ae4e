"""The bulk-upload CLI (cli/image_uploads_cli) against the local stack, run in-process through main()."""

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from image_uploads_cli.__main__ import main
from image_uploads_cli.api import Api, ApiError
from tests import sample_images
from tests.integration.conftest import ROOT


def mpo(width: int = 64, height: int = 48) -> bytes:
    """What a 3D camera writes: a JPEG whose first image is followed by a second (Pillow's MPO)."""
    first = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[first.rotate(180)])
    return out.getvalue()


IMAGES = {
    "a.jpg": sample_images.jpeg(64, 48),
    "b.png": sample_images.png(40, 30),
    "c.gif": sample_images.gif(30, 20),
    "d.webp": sample_images.webp(50, 40),
    "sub/voiture été (1).jpg": sample_images.jpeg(32, 24),
    "sub/deeper/e.png": sample_images.png(10, 10),
    "camera/IMG_0001.MPO": mpo(),  # a JPEG, by its bytes
    "camera/IMG_0002.JPG": sample_images.jpeg(48, 32),
}
# A JPEG by its first bytes, cut short: sent, then rejected by the S3 trigger (`corrupt`).
FAKE = "sub/broken.jpg"
# Refused locally, by their bytes or size: never sent.
REFUSED = {"notes.txt": b"not an image", "empty.png": b"", "page.png": sample_images.HTML}


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    files = {**IMAGES, FAKE: sample_images.jpeg(64, 48)[:500], **REFUSED, ".hidden.jpg": sample_images.jpeg()}
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

    assert code == 1, out  # the cut JPEG was rejected
    assert "uploaded 8, unverified 0, already uploaded 0, rejected 1, failed 0, skipped locally 3" in out
    images = {i["filename"]: i for i in records(stack, dataset)}
    assert set(images) == {*IMAGES, FAKE}
    for name, data in IMAGES.items():
        assert (images[name]["status"], images[name]["file_size"]) == ("uploaded", len(data))
    assert (images["a.jpg"]["width"], images["a.jpg"]["height"]) == (64, 48)
    assert images[FAKE]["status"] == "error"
    assert images[FAKE]["error_reason"]["code"] == "corrupt"
    assert "corrupt" in out

    # Files are known by content: a renamed or moved file is not sent again, nor the rejected one.
    (folder / "moved").mkdir()
    (folder / "a.jpg").rename(folder / "moved" / "renamed.jpg")
    with stack.record_aws_calls() as recording:
        code, out = upload(capsys, stack, folder, dataset)

    assert code == 1, out  # the cut JPEG is still not in the dataset
    assert "uploaded 0, unverified 0, already uploaded 8, rejected 0, failed 0, skipped locally 3" in out
    assert "rejected before 1" in out
    assert [call for call in recording.calls if call == ("s3", "PUT")] == []
    again = records(stack, dataset)
    assert len(again) == len(images)
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
    assert f"uploaded {len(IMAGES) - 3}, unverified 0, already uploaded 3" in out
    images = records(stack, dataset)
    assert sorted(i["filename"] for i in images) == sorted(IMAGES)
    assert {i["status"] for i in images} == {"uploaded"}


def test_failed_puts_are_retried_with_a_fresh_url_after_a_403(stack, capsys, folder, monkeypatch):
    dataset = stack.dataset()
    (folder / FAKE).unlink()
    real_put, real_prepare, urls, prepared = Api.put, Api.prepare, [], []

    class Refusal:
        ok, status_code = False, 0

    def flaky_put(self, url, body, size, mime_type, headers=None):
        urls.append(url)
        if len(urls) in (1, 2):  # an expired URL (403), then S3 unavailable (503)
            body.read()
            refusal = Refusal()
            refusal.status_code = 403 if len(urls) == 1 else 503
            return refusal
        return real_put(self, url, body, size, mime_type, headers)

    def counted_prepare(self, dataset, files):
        prepared.append(len(files))
        return real_prepare(self, dataset, files)

    monkeypatch.setattr(Api, "put", flaky_put)
    monkeypatch.setattr(Api, "prepare", counted_prepare)
    code, out = upload(capsys, stack, folder, dataset, "--concurrency", "1")

    assert code == 0, out
    assert len(urls) == len(IMAGES) + 2
    # The 403 got a fresh URL (for the same image: its bytes' reservation was still valid); the 503
    # was retried as is.
    assert prepared == [len(IMAGES), 1]
    assert urls[2] == urls[1]
    images = records(stack, dataset)
    assert len(images) == len(IMAGES)
    assert {i["status"] for i in images} == {"uploaded"}


def test_dry_run_sends_nothing(stack, capsys, folder):
    dataset = stack.dataset()

    code, out = upload(capsys, stack, folder, dataset, "--dry-run")
    assert code == 0
    assert f"would send {len(IMAGES) + 1}" in out
    assert "refused locally 3" in out
    assert "notes.txt" in out

    # --magic (judging by content) is what the CLI always does now; older scripts still work.
    code, again = upload(capsys, stack, folder, dataset, "--dry-run", "--magic")
    assert (code, again) == (0, out)
    assert records(stack, dataset) == []


def test_files_are_judged_by_their_bytes_not_their_names(stack, capsys, tmp_path):
    dataset = stack.dataset()
    folder = tmp_path / "camera"
    folder.mkdir()
    photos = {
        "IMG_0001.mpo": mpo(80, 60),
        "IMG_0002.JPG": sample_images.jpeg(64, 48),
        # A phone's portrait photo: stored 96x64, shown 64x96 (orientation 6).
        "IMG_0003.HEIC": sample_images.heic(Image.new("RGB", (96, 64), (30, 90, 200)), orientation=6),
        "IMG_0004.avif": sample_images.avif(),
    }
    for name, data in {**photos, "index.png": sample_images.HTML}.items():
        (folder / name).write_bytes(data)

    code, out = upload(capsys, stack, folder, dataset)

    assert code == 0, out
    assert "uploaded 4, unverified 0, already uploaded 0, rejected 0, failed 0, skipped locally 1" in out
    assert "index.png" in out
    cells = " ".join(re.sub(r"[│┃]", " ", out).split())  # the reason may wrap in its table cell
    assert "content is not a JPEG, PNG, WebP, GIF, HEIC, HEIF or AVIF image" in cells
    images = {i["filename"]: i for i in records(stack, dataset)}
    assert set(images) == set(photos)  # the HTML was never sent
    types = {"IMG_0003.HEIC": "image/heic", "IMG_0004.avif": "image/avif"}
    for name, data in photos.items():
        image = images[name]
        assert (image["status"], image["mime_type"]) == ("uploaded", types.get(name, "image/jpeg"))
        assert image["file_size"] == len(data)
    assert (images["IMG_0001.mpo"]["width"], images["IMG_0001.mpo"]["height"]) == (80, 60)
    heic = images["IMG_0003.HEIC"]
    assert (heic["width"], heic["height"], heic["display_width"], heic["display_height"]) == (96, 64, 64, 96)
    code, out, _ = cli(capsys, stack, "ls", "--dataset", str(dataset))
    assert code == 0
    assert has_row(out, "IMG_0003.HEIC", "uploaded", "64x96"), out  # as shown, not as stored


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


def test_a_refusal_after_the_puts_says_the_files_were_stored(stack, capsys, folder, monkeypatch):
    dataset = stack.dataset()
    (folder / FAKE).unlink()

    def expired(self, dataset, image_ids):
        raise ApiError(401, "Unauthorized")  # as when the token expires during a long upload

    monkeypatch.setattr(Api, "confirm", expired)
    code, out, err = cli(capsys, stack, "upload", str(folder), "--dataset", str(dataset), "--no-progress")

    assert (code, out) == (2, "")
    assert err.splitlines() == [
        REFUSED_TOKEN.strip(),
        f"{len(IMAGES)} file(s) were stored before that and are checked all the same: "
        "run the same command again to resume",
    ]
    monkeypatch.undo()
    assert upload(capsys, stack, folder, dataset)[0] == 0


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


# --- Tokens and datasets (`make run AUTH=jwt`) ---------------------------------------------------------

REFUSED_TOKEN = (
    "error: the API refused the token (missing, expired or invalid): "
    "pass --token or set IMAGE_UPLOADS_TOKEN\n"
)
SHARED = 501  # the other jwt tests take their datasets from JwtStack.dataset() (1000 on)
SMALL = {
    "a.jpg": sample_images.jpeg(64, 48),
    "b.png": sample_images.png(40, 30),
    "c/d.webp": sample_images.webp(50, 40),
}


@pytest.fixture
def no_env_token(monkeypatch):
    monkeypatch.delenv("IMAGE_UPLOADS_TOKEN", raising=False)


def as_user(capsys, jwt_stack, token: str, *args: str) -> tuple[int, str, str]:
    return cli(capsys, jwt_stack, *args, "--token", token)


def answered(status: int, detail: str) -> str:
    """The CLI's one line for an API error."""
    return f"error: the API answered HTTP {status}: {detail}\n"


def has_row(table: str, *cells: str) -> bool:
    """Whether one line of a rich table holds these cells, in this order."""
    pattern = r".*".join(rf"(?<![\w-]){re.escape(c)}(?![\w-])" for c in cells)
    return any(re.search(pattern, line) for line in table.splitlines())


def records_as(jwt_stack, token: str, dataset: int) -> list[dict]:
    return list(Api(jwt_stack.api, token=token).images(dataset))


def test_datasets_create_share_unshare_and_what_each_member_may_do(
    jwt_stack, capsys, tmp_path, monkeypatch, no_env_token
):
    alice, bob = jwt_stack.dev_token("alice"), jwt_stack.dev_token("bob")
    outputs: list[str] = []

    def run(token: str, *args: str) -> tuple[int, str, str]:
        code, out, err = as_user(capsys, jwt_stack, token, *args)
        outputs.extend((out, err))
        return code, out, err

    folder = tmp_path / "small"
    for name, data in SMALL.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    dataset = str(SHARED)
    upload_args = ("upload", str(folder), "--dataset", dataset, "--no-progress")

    # alice creates 501 and owns it; creating it again changes nothing; bob cannot take it.
    assert run(alice, "datasets", "create", dataset) == (
        0,
        f"created dataset {SHARED}: you are its owner\n",
        "",
    )
    assert run(alice, "datasets", "create", dataset) == (
        0,
        f"dataset {SHARED} is already yours (owner)\n",
        "",
    )
    assert run(bob, "datasets", "create", dataset) == (
        2,
        "",
        answered(409, f"Dataset {SHARED} already exists"),
    )
    code, out, _ = run(alice, "datasets", "ls")
    assert code == 0
    assert has_row(out, dataset, "owner"), out

    # alice uploads a folder with her token; the S3 PUTs carry the presigned URL, never the token.
    sent: list = []
    real_put = Api.put

    def recording_put(self, *args, **kwargs):
        response = real_put(self, *args, **kwargs)
        sent.append(response.request.headers)  # what requests really sent
        return response

    monkeypatch.setattr(Api, "put", recording_put)
    code, out, _ = run(alice, *upload_args)
    assert code == 0, out
    assert "uploaded 3, unverified 0, already uploaded 0, rejected 0, failed 0, skipped locally 0" in out
    assert len(sent) == len(SMALL)
    assert not [headers for headers in sent if "Authorization" in headers]

    # bob is not a member: the dataset does not exist for him.
    not_found = answered(404, f"Dataset {SHARED} not found")
    assert run(bob, "ls", "--dataset", dataset) == (1, "", not_found)
    assert not has_row(run(bob, "datasets", "ls")[1], dataset)

    # Shared as a viewer: bob lists, but his upload is refused once, before any PUT.
    code, out, _ = run(alice, "datasets", "share", dataset, "bob", "--role", "viewer")
    assert (code, out) == (0, f"bob now has the viewer role in dataset {SHARED}\n")
    code, out, _ = run(bob, "ls", "--dataset", dataset)
    assert code == 0
    assert has_row(out, "a.jpg", "uploaded", "64x48"), out
    assert "3 image(s)" in out
    assert has_row(run(bob, "datasets", "ls")[1], dataset, "viewer")
    (folder / "new.png").write_bytes(sample_images.png(12, 12))
    sent.clear()
    viewer_refused = answered(403, f"This needs the editor role in dataset {SHARED}; you are a viewer")
    assert run(bob, *upload_args) == (2, "", viewer_refused)
    assert sent == []
    assert len(records_as(jwt_stack, alice, SHARED)) == len(SMALL)

    # Only an owner sees the members.
    code, out, _ = run(alice, "datasets", "members", dataset)
    assert code == 0
    assert has_row(out, "alice", "owner")
    assert has_row(out, "bob", "viewer")
    assert "2 member(s)" in out
    assert run(bob, "datasets", "members", dataset) == (
        2,
        "",
        answered(403, f"This needs the owner role in dataset {SHARED}; you are a viewer"),
    )

    # Unshared: bob's next call is a 404 again; the last owner cannot go.
    code, out, _ = run(alice, "datasets", "unshare", dataset, "bob")
    assert (code, out) == (0, f"bob is no longer a member of dataset {SHARED}\n")
    assert run(bob, "ls", "--dataset", dataset) == (1, "", not_found)
    assert run(bob, *upload_args) == (1, "", not_found)
    last_owner = f"Dataset {SHARED} must keep an owner: make another member owner first"
    assert run(alice, "datasets", "unshare", dataset, "alice") == (2, "", answered(409, last_owner))
    assert has_row(run(alice, "datasets", "members", dataset)[1], "alice", "owner")

    # Neither token ever reached the terminal.
    assert not [o for o in outputs if alice in o or bob in o]


def test_no_token_or_an_expired_one_is_the_401_message(jwt_stack, capsys, no_env_token):
    for args in (["ls", "--dataset", "1"], ["datasets", "ls"], ["get", "1"], ["rm", "1", "2"]):
        assert cli(capsys, jwt_stack, *args) == (2, "", REFUSED_TOKEN), args

    expired = jwt_stack.dev_token("alice", ttl=1)
    deadline = time.monotonic() + 10
    result = as_user(capsys, jwt_stack, expired, "datasets", "ls")
    while result[0] != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        result = as_user(capsys, jwt_stack, expired, "datasets", "ls")
    assert result == (2, "", REFUSED_TOKEN)


def test_the_token_may_come_from_image_uploads_token(jwt_stack, capsys, monkeypatch):
    token = jwt_stack.dev_token("erin")
    dataset = str(jwt_stack.dataset())
    monkeypatch.setenv("IMAGE_UPLOADS_TOKEN", token + "\n")  # as `$(make -s token ...)` may leave it

    assert cli(capsys, jwt_stack, "datasets", "create", dataset) == (
        0,
        f"created dataset {dataset}: you are its owner\n",
        "",
    )
    code, out, err = cli(capsys, jwt_stack, "datasets", "ls")
    assert (code, err) == (0, "")
    assert has_row(out, dataset, "owner"), out
    assert "1 dataset(s)" in out
    code, out, err = cli(capsys, jwt_stack, "ls", "--dataset", dataset)
    assert (code, err) == (0, "")
    assert "0 image(s)" in out
    assert token not in out


def test_the_token_may_come_before_the_command(jwt_stack, capsys, no_env_token):
    token = jwt_stack.dev_token("frank")
    capsys.readouterr()
    code = main(["--api", jwt_stack.api, "--token", token, "datasets", "ls"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert "0 dataset(s)" in out


def test_argument_errors_do_not_repeat_the_token(capsys, monkeypatch):
    monkeypatch.setenv("IMAGE_UPLOADS_TOKEN", "from.the-env")
    cases = [
        ["get", "--token", "given.twice", "given.twice"],  # pasted where the id goes: "invalid value"
        ["ls", "--dataset", "1", "from.the-env"],  # the variable's value pasted as an argument
        ["--tokn", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "ls"],  # a JWT after a misspelt option
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        out, err = capsys.readouterr()
        assert exit_.value.code == 2
        assert "<token>" in err, err
        assert not [a for a in argv if "." in a and a in out + err], err


def test_a_malformed_token_is_refused_without_being_printed(capsys):
    code = main(["ls", "--dataset", "1", "--api", "http://127.0.0.1:9", "--token", "eyJhbGciOi.secret part"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (
        "error: the token (--token or IMAGE_UPLOADS_TOKEN) is not a bearer token: "
        "it has spaces, line breaks or other characters a token cannot have\n"
    )


def test_the_token_goes_to_the_api_and_never_to_s3():
    api = Api("http://api.example", token="tok.en-1")
    to_api = api.http.prepare_request(requests.Request("GET", "http://api.example/datasets"))
    to_s3 = api.s3.prepare_request(requests.Request("PUT", "http://127.0.0.1:4566/b/k?X-Amz-Signature=x"))
    assert to_api.headers["Authorization"] == "Bearer tok.en-1"
    assert "Authorization" not in to_s3.headers
    assert "tok.en-1" not in repr(api.http.auth)
    no_token = Api("http://api.example", token="")
    assert "Authorization" not in no_token.http.prepare_request(requests.Request("GET", "http://x/")).headers


def test_datasets_commands_say_they_need_jwt_on_an_open_stack(stack, capsys, no_env_token):
    code, out, err = cli(capsys, stack, "datasets", "ls")
    assert (code, out) == (2, "")
    assert err == answered(
        409,
        "Datasets have no members with AuthMode=open (anyone may use any dataset): "
        "members and roles need AuthMode=jwt",
    )
