"""The design note's flow over real HTTP against the running local stack."""

import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests import sample_images
from tests.integration.conftest import ROOT, Stack, _running_stack


def prepare(stack, dataset_id, files, **params):
    return stack.http.post(
        stack.url(f"/datasets/{dataset_id}/images/prepare-upload"), json={"files": files}, params=params
    )


def test_prepare_put_confirm_list_download_patch_delete(stack, tmp_path):
    dataset = stack.dataset()
    photo = sample_images.jpeg(64, 48)
    files = [
        {"filename": "car1.jpg", "file_size": len(photo), "mime_type": "image/jpeg"},
        {"filename": "voiture été (1).jpg", "file_size": 5, "mime_type": "image/jpeg"},  # never sent
    ]
    reply = prepare(stack, dataset, files)
    assert reply.status_code == 200
    first, second = reply.json()["uploads"]
    # Path-style URLs on the emulator, so a plain HTTP client can PUT to them.
    assert first["upload_url"].startswith(f"{stack.aws}/{stack.bucket()}/datasets/{dataset}/images/")
    assert second["s3_key"].endswith("_voiture été (1).jpg")

    put = stack.http.put(first["upload_url"], data=photo, headers={"Content-Type": "image/jpeg"})
    assert put.status_code == 200
    assert put.headers["ETag"]

    reply = stack.http.post(
        stack.url(f"/datasets/{dataset}/images/confirm-upload"),
        json={"image_ids": [first["image_id"], second["image_id"]]},
    )
    assert reply.json() == {
        "message": "Successfully confirmed 1 uploads",
        "updated_count": 1,
        "total_requested": 2,
        "pending_count": 0,  # confirm waited for the S3 trigger's verdict
    }

    listed = stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()
    assert [(i["id"], i["status"]) for i in listed] == [
        (first["image_id"], "uploaded"),
        (second["image_id"], "error"),
    ]
    assert "download_url" not in listed[0]

    with_urls = stack.http.get(
        stack.url(f"/datasets/{dataset}/images/with-urls"), params={"status": "uploaded"}
    )
    (item,) = with_urls.json()
    assert stack.http.get(item["download_url"]).content == photo

    link = stack.http.get(
        stack.url(f"/images/{first['image_id']}/download-url"), params={"expires_in": 60}
    ).json()
    assert link["expires_in"] == 60
    assert stack.http.get(link["download_url"]).content == photo
    assert stack.http.get(stack.url(f"/images/{second['image_id']}/download-url")).status_code == 409

    patched = stack.http.patch(
        stack.url(f"/images/{first['image_id']}"), json={"width": 1920, "height": 1080}
    )
    assert (patched.json()["width"], patched.json()["height"]) == (1920, 1080)
    assert stack.http.get(stack.url(f"/images/{first['image_id']}")).json() == patched.json()

    assert stack.http.delete(stack.url(f"/images/{first['image_id']}")).status_code == 200
    assert stack.http.get(stack.url(f"/images/{first['image_id']}")).status_code == 404
    objects = stack.client("s3").list_objects_v2(Bucket=stack.bucket(), Prefix=f"datasets/{dataset}/")
    assert "Contents" not in objects


WALKTHROUGH = re.compile(r"<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->", re.S)
ANSWER = "# → "


def walkthrough(readme: str) -> list[tuple[str, str | None]]:
    """The README's walkthrough: (command, its `# →` answer or None), comments and blank lines left out."""
    (block,) = WALKTHROUGH.findall(readme)
    steps: list[list] = []
    continued = False
    for line in block.splitlines():
        if continued:
            steps[-1][0] += "\n" + line
        elif line.startswith(ANSWER):
            assert steps, f"an answer before any command: {line}"
            assert steps[-1][1] is None, f"two answers for one command: {line}"
            steps[-1][1] = line.removeprefix(ANSWER)
        elif line.strip() and not line.startswith("#"):
            steps.append([line, None])
        continued = bool(line.strip()) and not line.startswith("#") and line.endswith("\\")
    return [(command, answer) for command, answer in steps]


def answer_pattern(answer: str | None, aws: str) -> str:
    """The regular expression of a `# →` line: `...` elides, `<uuid>` is a uuid; no line: no output."""
    if answer is None or answer.startswith("(nothing"):
        return ""
    text = re.escape(answer.replace("http://127.0.0.1:4566", aws))
    return text.replace(re.escape("..."), ".*").replace(re.escape("<uuid>"), "[0-9a-f-]{36}")


@pytest.fixture
def fresh_stack(tmp_path_factory):
    """A stack of its own, just started as by `make run`: its first image is image 1, as in the README."""
    with _running_stack(tmp_path_factory, "fresh-stack") as (api, aws, recording, _):
        yield Stack(api, aws, recording)


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_the_readme_walkthrough_runs_as_written(fresh_stack):
    # test.jpg at the repository root is what the note declares: a real JPEG of 1024 bytes.
    test_jpg = ROOT / "test.jpg"
    assert test_jpg.stat().st_size == 1024
    with Image.open(test_jpg) as img:
        assert img.format == "JPEG"
        img.load()
    steps = walkthrough((ROOT / "README.md").read_text())
    assert [command.split()[:2] for command, _ in steps] == [
        ["curl", "-X"],  # POST prepare-upload
        ["curl", "-X"],  # PUT
        ["curl", "-X"],  # POST confirm-upload
        ["curl", '"http://localhost:3000/datasets/1/images/with-urls?status=uploaded"'],
        ["curl", "http://localhost:3000/images/1/download-url"],
        ["curl", "-X"],  # PATCH
        ["curl", "-X"],  # DELETE
    ]

    upload_url = None
    for command, answer in steps:
        # What a reader does: their own ports (here the test stack's), and the URL copied from the
        # first answer in place of PRESIGNED_URL.
        command = command.replace("http://localhost:3000", fresh_stack.api)
        if "PRESIGNED_URL" in command:
            assert upload_url, "PRESIGNED_URL is used before prepare-upload answered"
            command = command.replace("PRESIGNED_URL", upload_url)
        run = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, f"{command}\n{run.stderr}"
        assert re.fullmatch(answer_pattern(answer, fresh_stack.aws), run.stdout, re.S), (
            f"{command}\nanswered {run.stdout!r}\nthe README says {answer!r}"
        )
        if upload_url is None and "prepare-upload" in command:
            upload_url = json.loads(run.stdout)["uploads"][0]["upload_url"]

    # The last step deleted the image: nothing is left of the walkthrough.
    assert fresh_stack.http.get(fresh_stack.url("/images/1")).status_code == 404
    assert fresh_stack.http.get(fresh_stack.url("/datasets/1/images")).json() == []


def test_the_walkthrough_parser_reads_continued_commands_and_answers():
    readme = (
        "<!-- walkthrough:start -->\n```bash\n"
        "curl -X POST http://localhost:3000/a \\\n  -d '{}'\n# → {\"id\":1,...}\n\n"
        "# a comment\ncurl -X PUT x\n```\n<!-- walkthrough:end -->\n"
    )
    assert walkthrough(readme) == [
        ("curl -X POST http://localhost:3000/a \\\n  -d '{}'", '{"id":1,...}'),
        ("curl -X PUT x", None),
    ]
    assert re.fullmatch(answer_pattern('{"id":1,...}', "http://x"), '{"id":1,"a":2}')
    assert not re.fullmatch(answer_pattern('{"id":1,...}', "http://x"), '{"id":2}')
    assert answer_pattern(None, "http://x") == ""


def test_cursor_pages_over_http(stack):
    dataset = stack.dataset()
    files = [{"filename": f"c{i}.png", "file_size": 10, "mime_type": "image/png"} for i in range(7)]
    ids = [u["image_id"] for u in prepare(stack, dataset, files).json()["uploads"]]

    seen, params = [], {"limit": 3}
    while True:
        reply = stack.http.get(stack.url(f"/datasets/{dataset}/images"), params=params)
        assert reply.status_code == 200
        seen.append([i["id"] for i in reply.json()])
        if "X-Next-Cursor" not in reply.headers:
            break
        params = {"limit": 3, "cursor": reply.headers["X-Next-Cursor"]}
    assert seen == [ids[:3], ids[3:6], ids[6:]]

    bad = stack.http.get(stack.url(f"/datasets/{dataset}/images"), params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400


def test_prepare_of_1000_files_makes_41_dynamodb_calls_and_no_s3_call(stack):
    dataset = stack.dataset()
    files = [
        {"filename": f"car{i}.jpg", "file_size": 1000 + i, "mime_type": "image/jpeg"} for i in range(1000)
    ]
    with stack.record_aws_calls() as recording:
        reply = prepare(stack, dataset, files)
    assert reply.status_code == 200
    assert len(reply.json()["uploads"]) == 1000
    assert sorted(recording.calls) == sorted(
        [("dynamodb", "UpdateItem")] + [("dynamodb", "BatchWriteItem")] * 40
    )

    with stack.record_aws_calls() as recording:
        prepare(stack, dataset, files[:1])
    assert recording.calls == [("dynamodb", "UpdateItem"), ("dynamodb", "BatchWriteItem")]


def test_confirm_heads_only_what_the_trigger_has_not_verified(stack):
    dataset = stack.dataset()
    photos = [sample_images.jpeg_of_size(2000, tag=i) for i in range(5)]  # other bytes each
    files = [{"filename": f"car{i}.jpg", "file_size": 2000, "mime_type": "image/jpeg"} for i in range(5)]
    uploads = prepare(stack, dataset, files).json()["uploads"]
    for ticket, photo in zip(uploads[:3], photos, strict=False):
        stack.http.put(ticket["upload_url"], data=photo, headers={"Content-Type": "image/jpeg"})
    ids = [u["image_id"] for u in uploads]
    reply = stack.http.post(stack.url(f"/datasets/{dataset}/images/confirm-upload"), json={"image_ids": ids})
    assert (reply.json()["updated_count"], reply.json()["pending_count"]) == (3, 0)

    with stack.record_aws_calls() as recording:
        again = stack.http.post(
            stack.url(f"/datasets/{dataset}/images/confirm-upload"), json={"image_ids": ids}
        )
    assert again.json()["updated_count"] == 3
    # 3 verified: no HEAD; 2 never sent: one HEAD each (still absent), already `error`.
    assert sorted(recording.calls) == sorted([("dynamodb", "BatchGetItem")] + [("s3", "HEAD")] * 2)


def test_bucket_cors_lets_a_localhost_page_put_and_read_etag(stack):
    rules = stack.client("s3").get_bucket_cors(Bucket=stack.bucket())["CORSRules"]
    assert any(
        ("*" in r["AllowedOrigins"] or "http://localhost:3000" in r["AllowedOrigins"])
        and {"PUT", "GET", "HEAD"} <= set(r["AllowedMethods"])
        and "ETag" in r.get("ExposeHeaders", [])
        for r in rules
    )


def test_api_answers_cors_preflights_and_exposes_the_cursor_header(stack):
    preflight = stack.http.options(
        stack.url("/datasets/1/images/prepare-upload"),
        headers={"Origin": "http://localhost:8080", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:8080")
    listed = stack.http.get(stack.url("/datasets/1/images"), headers={"Origin": "http://localhost:8080"})
    assert "x-next-cursor" in listed.headers["Access-Control-Expose-Headers"].lower()


def test_presigned_urls_are_not_rewritten_by_the_stack(stack):
    ticket = prepare(
        stack, stack.dataset(), [{"filename": "a.gif", "file_size": 9, "mime_type": "image/gif"}]
    )
    url = urlsplit(ticket.json()["uploads"][0]["upload_url"])
    assert "X-Amz-Signature=" in url.query
    assert "content-length%3Bcontent-type%3Bhost" in url.query
