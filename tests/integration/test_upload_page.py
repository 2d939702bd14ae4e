"""The upload page of web/ in a real (headless) Chromium against the local stack.

Chromium comes from the system (`make browser-deps`), never from `playwright install`: without it
this test fails, it does not skip.
"""

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests import sample_images

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
FINAL_STATES = ("uploaded", "error", "refused", "failed")


def chromium() -> str:
    for path in CHROMIUM_PATHS:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is missing: run `make browser-deps` (apt-get install chromium)")
    return found


def test_the_page_and_its_files_are_served_at_the_root_and_under_web(stack):
    index = stack.http.get(stack.url("/"))
    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script src="app.js">' in index.text
    assert stack.http.get(stack.url("/web/")).text == index.text
    for path in ("/app.js", "/web/app.js"):
        script = stack.http.get(stack.url(path))
        assert script.status_code == 200
        assert script.headers["Content-Type"].startswith("text/javascript")
    assert stack.http.get(stack.url("/web/style.css")).headers["Content-Type"].startswith("text/css")
    # Only files of web/, only for GET and HEAD, and the API's routes come first.
    assert stack.http.get(stack.url("/web/%2e%2e/template.yaml")).status_code == 404
    assert stack.http.get(stack.url("/nothing.js")).status_code == 404
    assert stack.http.post(stack.url("/"), data=b"x").status_code == 404
    assert stack.http.head(stack.url("/web/index.html")).status_code == 200
    assert stack.http.get(stack.url("/openapi.json")).json()["openapi"]


def test_a_folder_of_files_uploads_from_the_page(stack, tmp_path):
    dataset = stack.dataset()
    files = {
        "photo.jpg": sample_images.jpeg(640, 480),
        "<b>bold<b> été.png": sample_images.png(40, 30),  # a name is data, never markup
        "anim.gif": sample_images.gif(30, 20),
        "pic.webp": sample_images.webp(50, 40),
        "fake.jpg": sample_images.HTML,  # typed image/jpeg by its name; the trigger reads HTML
        "notes.txt": b"not an image\n",  # refused by the page before any request
        "huge.png": b"\x89PNG" + b"\0" * (10 * 1024 * 1024),  # over 10 MiB: refused by the page
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    console_errors: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
            page.on("response", lambda r: r.status >= 400 and console_errors.append(f"{r.status} {r.url}"))
            # The first PUT of photo.jpg fails as if S3 dropped the connection: the page retries it
            # with a fresh URL from a new prepare-upload.
            failed_puts: list[str] = []

            def drop_first_photo_put(route):
                if route.request.method == "PUT" and "photo.jpg" in route.request.url and not failed_puts:
                    failed_puts.append(route.request.url)
                    route.abort("connectionreset")
                else:
                    route.continue_()

            page.route(f"{stack.aws}/**", drop_first_photo_put)
            page.goto(stack.url(f"/?dataset={dataset}&page_size=3"))
            page.set_input_files("#files", [str(tmp_path / name) for name in files])

            rows = page.locator("#rows tr")
            expect(rows).to_have_count(len(files))
            expect(page.locator('#rows tr[data-state="refused"]')).to_have_count(2)
            expect(page.locator("#start")).to_have_text("Upload 5 files")
            page.click("#start")

            page.wait_for_function(
                f"""() => [...document.querySelectorAll('#rows tr')]
                    .every(r => {list(FINAL_STATES)!r}.includes(r.dataset.state))""",
                timeout=30_000,
            )
            states = {
                row.locator("td.name").inner_text().strip(): (
                    row.get_attribute("data-state"),
                    row.locator("td.status").inner_text(),
                )
                for row in rows.all()
            }
            # The grid: one thumbnail per uploaded image, each loaded from S3, 3 a page.
            expect(page.locator("#grid img")).to_have_count(3)
            page.click("#more")
            page.wait_for_function(
                """() => {
                    const imgs = [...document.querySelectorAll('#grid img')];
                    return imgs.length === 4 && imgs.every(i => i.complete && i.naturalWidth > 0);
                }""",
                timeout=15_000,
            )
            expect(page.locator("#more")).to_be_hidden()
            captions = page.locator("#grid .caption").all_inner_texts()
            markup = page.locator("#rows b, #grid b").count()
            overall = page.eval_on_selector("#overall", "p => [p.value, p.max]")
            summary = page.inner_text("#summary")
            message_hidden = page.locator("#message").is_hidden()
            page.screenshot(path=tmp_path / "upload_page.png", full_page=True)
        finally:
            browser.close()

    assert states["photo.jpg"] == ("uploaded", "uploaded · 640\u00d7480")
    assert states["<b>bold<b> été.png"] == ("uploaded", "uploaded · 40\u00d730")
    assert states["anim.gif"][0] == "uploaded"
    assert states["pic.webp"][0] == "uploaded"
    assert states["fake.jpg"][0] == "error"
    assert "not_an_image" in states["fake.jpg"][1]
    assert states["notes.txt"][0] == "refused"
    assert "text/plain" in states["notes.txt"][1]
    assert states["huge.png"][0] == "refused"
    assert "over 10 MiB" in states["huge.png"][1]
    assert sorted(captions) == sorted(["photo.jpg", "<b>bold<b> été.png", "anim.gif", "pic.webp"])
    assert markup == 0
    sent = sum(len(data) for name, data in files.items() if name not in ("notes.txt", "huge.png"))
    assert overall == [sent, sent]
    assert "4 uploaded" in summary
    assert message_hidden
    assert len(failed_puts) == 1
    assert [e for e in console_errors if "ERR_CONNECTION_RESET" not in e] == []  # the dropped PUT

    # What the API and the bucket hold: the refused files were never sent.
    images = stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()
    by_name = {image["filename"]: image for image in images}
    assert set(by_name) == {"photo.jpg", "<b>bold<b> été.png", "anim.gif", "pic.webp", "fake.jpg"}
    s3 = stack.client("s3")
    for name in ("photo.jpg", "<b>bold<b> été.png", "anim.gif", "pic.webp"):
        image = by_name[name]
        assert image["status"] == "uploaded"
        assert image["width"]
        assert image["height"]
        assert image["file_size"] == len(files[name])
        head = s3.head_object(Bucket=stack.bucket(), Key=image["s3_key"])
        assert head["ContentLength"] == len(files[name])
    assert (by_name["photo.jpg"]["width"], by_name["photo.jpg"]["height"]) == (640, 480)
    assert by_name["photo.jpg"]["s3_key"] not in failed_puts[0]  # a fresh key, the first record gone
    rejected = by_name["fake.jpg"]
    assert rejected["status"] == "error"
    assert rejected["error_reason"]["code"] == "not_an_image"


def test_an_unreachable_api_is_said_so(stack):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(stack.url(f"/?dataset={stack.dataset()}&api=http://127.0.0.1:9"))
            expect(page.locator("#message")).to_contain_text("The API at http://127.0.0.1:9 is unreachable")
        finally:
            browser.close()


def test_the_bucket_cors_rules_let_the_page_put_and_get(stack):
    # moto answers preflights whatever the rules say: check the rules themselves.
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(stack.api))
    rules = stack.client("s3").get_bucket_cors(Bucket=stack.bucket())["CORSRules"]

    def allows(rule, method):
        origins = rule.get("AllowedOrigins", [])
        origin_ok = any(re.fullmatch(re.escape(o).replace(r"\*", ".*"), origin) for o in origins)
        headers_ok = any(h in ("*", "content-type", "Content-Type") for h in rule.get("AllowedHeaders", []))
        return origin_ok and method in rule["AllowedMethods"] and (method != "PUT" or headers_ok)

    assert any(allows(rule, "PUT") for rule in rules)
    assert any(allows(rule, "GET") for rule in rules)
    assert any("ETag" in rule.get("ExposeHeaders", []) for rule in rules)
