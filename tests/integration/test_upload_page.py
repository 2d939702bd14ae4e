"""The upload page of web/ in a real (headless) Chromium against the local stack.

Chromium comes from the system (`make browser-deps`), never from `playwright install`: without it
this test fails, it does not skip. The open stack (`make run`) has no sign-in; the jwt stack (`make run
AUTH=jwt`) gives the page its local issuer through /config.json.
"""

import base64
import hashlib
import io
import json
import re
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
from PIL import Image
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
FINAL_STATES = ("uploaded", "duplicate", "error", "refused", "failed")


def chromium() -> str:
    for path in CHROMIUM_PATHS:
        if Path(path).is_file():
            return path
    found = shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is missing: run `make browser-deps` (apt-get install chromium)")
    return found


def mpo(width: int = 64, height: int = 48) -> bytes:
    """What a 3D camera writes: a JPEG whose first image is followed by a second (Pillow's MPO)."""
    first = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[first.rotate(180)])
    return out.getvalue()


def origin(url: str) -> str:
    return "{0.scheme}://{0.netloc}".format(urlsplit(url))


@pytest.fixture(scope="module")
def _chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(_chromium):
    """One Chromium per module (a launch costs ~1 s of CPU); each test's pages live in browser contexts
    of their own (cookies, storage), all closed after it."""
    yield _chromium
    for context in _chromium.contexts:
        context.close()


class RequestLog:
    """Every request the page makes, as playwright sees it (headers read once the page is done)."""

    def __init__(self, page) -> None:
        self.requests = []
        page.on("request", lambda request: self.requests.append(request))

    def urls(self) -> list[str]:
        return [r.url for r in self.requests]

    def to(self, url_origin: str) -> list:
        return [r for r in self.requests if origin(r.url) == url_origin]


def elsewhere(urls: list[str], *origins: str) -> list[str]:
    """The URLs that are neither on one of `origins` nor the page's own data: and blob: URLs."""
    return [u for u in urls if origin(u) not in origins and not u.startswith(("data:", "blob:"))]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def storage(page, kind: str) -> dict:
    return page.evaluate(f"() => Object.fromEntries(Object.entries({kind}))")


def wait_until_settled(page, timeout: int = 30_000) -> None:
    page.wait_for_function(
        f"""() => {{
            const rows = [...document.querySelectorAll('#rows tr')];
            return rows.length && rows.every(r => {list(FINAL_STATES)!r}.includes(r.dataset.state));
        }}""",
        timeout=timeout,
    )


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sign_in(page, sub: str) -> None:
    """Click "Sign in", answer the local issuer's page as `sub`, and wait to be back signed in."""
    page.click("#sign-in")
    page.wait_for_url(re.compile(r".*/_local/oidc/authorize\?.*"))
    page.get_by_label("User").fill(sub)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user")).to_have_text(f"Signed in as {sub}")


def test_the_page_and_its_files_are_served_at_the_root_and_under_web(stack):
    index = stack.http.get(stack.url("/"))
    assert index.status_code == 200
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script src="app.js">' in index.text
    assert 'id="api"' not in index.text  # the API is the deployment's, not the visitor's
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


def test_the_stack_serves_the_pages_config(stack, jwt_stack):
    for path in ("/config.json", "/web/config.json"):
        answer = stack.http.get(stack.url(path))
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.json() == {}  # open: the API is the page's own origin, no sign-in
    config = requests.get(jwt_stack.url("/config.json"), timeout=10).json()
    assert config == {"oidc": {"issuer": jwt_stack.issuer, "client_id": "image-uploads-local"}}
    discovery = requests.get(f"{jwt_stack.issuer}/.well-known/openid-configuration", timeout=10)
    assert discovery.json()["issuer"] == jwt_stack.issuer


def test_a_folder_of_files_uploads_from_the_page(stack, tmp_path, browser):
    dataset = stack.dataset()
    files = {
        "photo.jpg": sample_images.jpeg(640, 480),
        "<b>bold<b> été.png": sample_images.png(40, 30),  # a name is data, never markup
        "anim.gif": sample_images.gif(30, 20),
        "pic.webp": sample_images.webp(50, 40),
        "camera.mpo": mpo(80, 60),  # a JPEG by its bytes, whatever the browser makes of the name
        "SHOT.JPG": sample_images.jpeg(48, 32),
        "broken.jpg": sample_images.jpeg(64, 48)[:500],  # a JPEG's first bytes, cut: the trigger says corrupt
        "fake.png": sample_images.HTML,  # HTML named .png: refused by the page, by its bytes
        "notes.txt": b"not an image\n",  # refused by the page before any request
        "huge.png": b"\x89PNG" + b"\0" * (10 * 1024 * 1024),  # over 10 MiB: refused by the page
    }
    uploaded = ["photo.jpg", "<b>bold<b> été.png", "anim.gif", "pic.webp", "camera.mpo", "SHOT.JPG"]
    refused = ["fake.png", "notes.txt", "huge.png"]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    console_errors: list[str] = []

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
    page.goto(stack.url(f"/?dataset={dataset}&page_size=4"))
    expect(page.locator("#rules")).to_have_text(
        "JPEG, PNG, WebP, GIF, HEIC, HEIF or AVIF, 10 MiB at most each "
        "(judged by their content, not their names)."
    )
    accept = page.get_attribute("#files", "accept")
    page.set_input_files("#files", [str(tmp_path / name) for name in files])

    rows = page.locator("#rows tr")
    expect(rows).to_have_count(len(files))
    expect(page.locator('#rows tr[data-state="refused"]')).to_have_count(len(refused))
    expect(page.locator("#start")).to_have_text(f"Upload {len(files) - len(refused)} files")
    page.click("#start")

    wait_until_settled(page)
    states = {
        row.locator("td.name").inner_text().strip(): (
            row.get_attribute("data-state"),
            row.locator("td.status").inner_text(),
        )
        for row in rows.all()
    }
    # The grid: one thumbnail per uploaded image, each loaded from S3, 4 a page.
    expect(page.locator("#grid img")).to_have_count(4)
    page.click("#more")
    page.wait_for_function(
        """() => {
            const imgs = [...document.querySelectorAll('#grid img')];
            return imgs.length === 6 && imgs.every(i => i.complete && i.naturalWidth > 0);
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

    assert states["photo.jpg"] == ("uploaded", "uploaded · 640\u00d7480")
    assert states["<b>bold<b> été.png"] == ("uploaded", "uploaded · 40\u00d730")
    assert states["anim.gif"][0] == "uploaded"
    assert states["pic.webp"][0] == "uploaded"
    assert states["camera.mpo"] == ("uploaded", "uploaded · 80\u00d760")
    assert states["SHOT.JPG"] == ("uploaded", "uploaded · 48\u00d732")
    assert states["broken.jpg"][0] == "error"
    assert "corrupt" in states["broken.jpg"][1]
    not_an_image = "not accepted: not a JPEG, PNG, WebP, GIF, HEIC, HEIF or AVIF image (by its content)"
    assert states["fake.png"] == ("refused", not_an_image)
    assert states["notes.txt"] == ("refused", not_an_image)
    assert states["huge.png"][0] == "refused"
    assert "over 10 MiB" in states["huge.png"][1]
    assert sorted(captions) == sorted(uploaded)
    assert markup == 0
    sent = sum(len(data) for name, data in files.items() if name not in refused)
    assert overall == [sent, sent]
    assert f"{len(uploaded)} uploaded" in summary
    assert accept == (
        "image/jpeg,.mpo,image/png,image/webp,image/gif,image/heic,.heic,image/heif,.heif,image/avif,.avif"
    )
    assert message_hidden
    assert len(failed_puts) == 1
    assert [e for e in console_errors if "ERR_CONNECTION_RESET" not in e] == []  # the dropped PUT

    # What the API and the bucket hold: the refused files were never sent.
    images = stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()
    by_name = {image["filename"]: image for image in images}
    assert set(by_name) == {*uploaded, "broken.jpg"}
    s3 = stack.client("s3")
    for name in uploaded:
        image = by_name[name]
        assert image["status"] == "uploaded"
        assert image["width"]
        assert image["height"]
        assert image["file_size"] == len(files[name])
        head = s3.head_object(Bucket=stack.bucket(), Key=image["s3_key"])
        assert head["ContentLength"] == len(files[name])
    assert (by_name["photo.jpg"]["width"], by_name["photo.jpg"]["height"]) == (640, 480)
    # The retry's prepare gave the same image back, with a fresh URL: its bytes' claim was still valid.
    assert by_name["photo.jpg"]["s3_key"] in unquote(failed_puts[0])
    # Each file was declared as the type its bytes show, whatever its name.
    assert {name: by_name[name]["mime_type"] for name in ("camera.mpo", "SHOT.JPG", "pic.webp")} == {
        "camera.mpo": "image/jpeg",
        "SHOT.JPG": "image/jpeg",
        "pic.webp": "image/webp",
    }
    rejected = by_name["broken.jpg"]
    assert rejected["status"] == "error"
    assert rejected["error_reason"]["code"] == "corrupt"


def data_url_image(url: str) -> Image.Image:
    match = re.fullmatch(r'url\("data:image/png;base64,([A-Za-z0-9+/=]+)"\)', url)
    assert match, url[:80]
    return Image.open(io.BytesIO(base64.b64decode(match[1])))


def test_a_phone_photo_uploads_from_the_page_shown_upright_with_its_placeholder(stack, tmp_path, browser):
    """An iPhone-like HEIC (stored 96x64, orientation 6, which Chromium cannot show) and an AVIF: the
    page sends both by their bytes, shows their display size, and paints each record's ThumbHash until
    its thumbnail loads (the thumbnails are held back here, so the placeholders stay)."""
    dataset = stack.dataset()
    portrait = Image.new("RGB", (96, 64), (30, 90, 200))
    portrait.paste((230, 40, 20), (0, 0, 48, 64))
    files = {
        "IMG_0001.HEIC": sample_images.heic(portrait, orientation=6),
        "IMG_0002.avif": sample_images.avif(Image.new("RGB", (80, 40), (40, 160, 60))),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    held: list[str] = []

    def hold_thumbnails(route):
        if "/thumbnails/" in route.request.url:
            held.append(route.request.url)  # never answered: the placeholder stays
        else:
            route.continue_()

    page.route(f"{stack.aws}/**", hold_thumbnails)
    page.goto(stack.url(f"/?dataset={dataset}"))
    expect(page.locator("#rules")).to_contain_text("HEIC, HEIF or AVIF")
    page.set_input_files("#files", [str(tmp_path / name) for name in files])
    expect(page.locator("#start")).to_have_text("Upload 2 files")
    page.click("#start")
    wait_until_settled(page)
    states = {
        row.locator("td.name").inner_text().strip(): row.locator("td.status").inner_text()
        for row in page.locator("#rows tr").all()
    }
    expect(page.locator("#grid img")).to_have_count(2)
    page.wait_for_function("() => document.querySelectorAll('#grid img.placeholder').length === 2")
    cards = {
        card.locator(".caption").inner_text(): (
            card.locator(".meta").inner_text(),
            card.locator("img").evaluate("i => i.style.backgroundImage"),
        )
        for card in page.locator("#grid li").all()
    }
    # Chromium cannot show the HEIC file itself: its row's preview falls back to the placeholder.
    heic_row = page.locator("#rows tr", has_text="IMG_0001.HEIC")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rows tr img')].some(i => i.src.startsWith('data:'))"
    )
    heic_preview = heic_row.locator("img").get_attribute("src")

    assert states == {"IMG_0001.HEIC": "uploaded · 64\u00d796", "IMG_0002.avif": "uploaded · 80\u00d740"}
    assert held
    heic_meta, heic_placeholder = cards["IMG_0001.HEIC"]
    assert "64\u00d796" in heic_meta
    painted = data_url_image(heic_placeholder)
    assert painted.width < painted.height  # upright: portrait, as shown
    # Red on top (the stored left half, turned), blue below: the ThumbHash decoded by the page.
    top, bottom = (
        painted.convert("RGB").getpixel((painted.width // 2, 2)),
        painted.convert("RGB").getpixel((painted.width // 2, painted.height - 3)),
    )
    assert top[0] > top[2]
    assert bottom[2] > bottom[0]
    assert heic_preview.startswith("data:image/png;base64,")
    avif_meta, avif_placeholder = cards["IMG_0002.avif"]
    assert "80\u00d740" in avif_meta
    painted = data_url_image(avif_placeholder)
    assert painted.width > 1.5 * painted.height  # ThumbHash keeps the aspect ratio roughly
    assert painted.convert("RGB").getpixel((16, 8))[1] > 120  # green
    images = {i["filename"]: i for i in stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()}
    assert images["IMG_0001.HEIC"]["mime_type"] == "image/heic"
    assert images["IMG_0002.avif"]["mime_type"] == "image/avif"


def test_a_file_already_in_the_dataset_is_not_sent_again(stack, tmp_path, browser):
    dataset = stack.dataset()
    photo = sample_images.jpeg_of_size(4000, tag=dataset)
    (tmp_path / "photo.jpg").write_bytes(photo)
    (tmp_path / "copy of photo.jpg").write_bytes(photo)

    page = browser.new_page()
    log = RequestLog(page)
    page.goto(stack.url(f"/?dataset={dataset}"))
    page.set_input_files("#files", [str(tmp_path / "photo.jpg")])
    page.click("#start")
    wait_until_settled(page)
    first = page.locator("#rows tr td.status").inner_text()
    puts = [r for r in log.to(stack.aws) if r.method == "PUT"]
    checksums = [r.headers.get("x-amz-checksum-sha256") for r in puts]

    page.goto(stack.url(f"/?dataset={dataset}"))  # a new visit: the page remembers nothing
    log.requests.clear()
    page.set_input_files("#files", [str(tmp_path / "copy of photo.jpg")])
    page.click("#start")
    wait_until_settled(page)
    row = page.locator("#rows tr")
    second = (row.get_attribute("data-state"), row.locator("td.status").inner_text())
    puts_again = [r for r in log.to(stack.aws) if r.method == "PUT"]

    image = stack.http.get(stack.url(f"/datasets/{dataset}/images")).json()
    assert first.startswith("uploaded")
    assert checksums == [base64.b64encode(hashlib.sha256(photo).digest()).decode()]
    assert [(i["filename"], i["sha256"]) for i in image] == [("photo.jpg", hashlib.sha256(photo).hexdigest())]
    assert second == ("duplicate", f"already in the dataset (#{image[0]['id']})")
    assert puts_again == []


def test_the_page_takes_its_rules_from_the_api(stack, tmp_path, browser):
    # Another deployment's rules: PNG only, 2 KiB at most, 2 files a batch. The page keeps no copy.
    rules = {**stack.http.get(stack.url("/limits")).json(), "mime_types": ["image/png"], "max_batch": 2}
    rules["max_file_size"] = 2048
    files = {
        "a.png": sample_images.png(10, 10),
        "b.png": sample_images.png(12, 12),
        "c.png": sample_images.png(14, 14),
        "photo.jpg": sample_images.jpeg(20, 20),  # an image, not one this API takes
        "big.png": sample_images.png(10, 10) + b"\0" * 2048,  # over 2 KiB
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    dataset = stack.dataset()

    page = browser.new_page()
    asked: list = []

    def limits(route):
        asked.append(route.request)
        route.fulfill(json=rules)

    page.route(stack.url("/limits"), limits)
    log = RequestLog(page)
    page.goto(stack.url(f"/?dataset={dataset}"))
    expect(page.locator("#rules")).to_have_text(
        "PNG, 2 KiB at most each (judged by their content, not their names)."
    )
    accept = page.get_attribute("#files", "accept")
    page.set_input_files("#files", [str(tmp_path / name) for name in files])
    expect(page.locator('#rows tr[data-state="refused"]')).to_have_count(2)
    expect(page.locator("#start")).to_have_text("Upload 3 files")
    page.click("#start")
    wait_until_settled(page)
    states = dict(
        zip(
            page.locator("#rows td.name").all_inner_texts(),
            page.locator("#rows td.status").all_inner_texts(),
            strict=True,
        )
    )
    prepared = [
        json.loads(r.post_data)
        for r in log.requests
        if r.method == "POST" and r.url.endswith("/prepare-upload")
    ]

    assert len(asked) == 1  # once per page load
    assert "authorization" not in asked[0].headers
    assert accept == "image/png"
    assert states["photo.jpg"] == "not accepted: JPEG images are not accepted (PNG only)"
    assert states["big.png"] == f"not accepted: over 2 KiB ({len(files['big.png'])} bytes)"
    assert [states[name].split(" ·")[0] for name in ("a.png", "b.png", "c.png")] == ["uploaded"] * 3
    assert [len(body["files"]) for body in prepared] == [2, 1]  # the API's max_batch
    assert {f["mime_type"] for body in prepared for f in body["files"]} == {"image/png"}


def test_without_the_apis_rules_no_file_is_sent(stack, tmp_path, browser):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(sample_images.jpeg())
    page = browser.new_page()
    page.route(stack.url("/limits"), lambda route: route.fulfill(status=404, json={"detail": "Gone"}))
    log = RequestLog(page)
    page.goto(stack.url(f"/?dataset={stack.dataset()}"))
    expect(page.locator("#message")).to_contain_text(
        "The API's upload rules (GET /limits) could not be read: it answered 404."
    )
    page.set_input_files("#files", [str(photo)])
    expect(page.locator("#rows tr")).to_have_attribute("data-state", "refused")
    expect(page.locator("#rows td.status")).to_contain_text("upload rules could not be read")
    expect(page.locator("#start")).to_be_disabled()
    sent = [r.url for r in log.requests if r.method in ("POST", "PUT")]
    assert sent == []


def test_an_unreachable_api_is_said_so(stack, browser):
    page = browser.new_page()
    # A deployment whose config.json names an API that does not answer.
    page.route(stack.url("/config.json"), lambda route: route.fulfill(json={"api": "http://127.0.0.1:9"}))
    page.goto(stack.url(f"/?dataset={stack.dataset()}"))
    expect(page.locator("#message")).to_contain_text("The API at http://127.0.0.1:9 is unreachable")


def test_without_config_the_api_is_the_pages_origin(stack, browser):
    dataset = stack.dataset()
    page = browser.new_page()
    page.route(stack.url("/config.json"), lambda route: route.fulfill(status=404, body="Not Found"))
    log = RequestLog(page)
    page.goto(stack.url(f"/?dataset={dataset}"))
    expect(page.locator("#grid-dataset")).to_have_text(str(dataset))
    expect(page.locator("#grid")).to_contain_text("No uploaded image yet.")
    expect(page.locator("#token")).to_be_visible()  # no issuer: a token field, empty for an open API
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#message")).to_be_hidden()
    listed = [r for r in log.requests if urlsplit(r.url).path == f"/datasets/{dataset}/images/with-urls"]
    assert [origin(r.url) for r in listed] == [origin(stack.api)]
    assert "authorization" not in listed[0].headers


def test_a_bad_config_sends_nothing(stack, browser):
    page = browser.new_page()
    page.route(stack.url("/config.json"), lambda route: route.fulfill(json={"api": "http://evil.example"}))
    log = RequestLog(page)
    page.goto(stack.url(f"/?dataset={stack.dataset()}"))
    expect(page.locator("#message")).to_contain_text("config.json: api must be an https: URL")
    page.wait_for_timeout(300)
    assert [u for u in log.urls() if urlsplit(u).hostname == "evil.example"] == []
    expect(page.locator("#start")).to_be_disabled()


def test_the_page_url_cannot_send_files_or_tokens_elsewhere(stack, tmp_path, browser):
    dataset = stack.dataset()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(sample_images.jpeg(320, 240))
    evil = "https://evil.example"
    query = f"?api={evil}&dataset={dataset}&issuer={evil}&oidc={evil}&config={evil}/config.json&token=x"

    page = browser.new_page()
    log = RequestLog(page)
    # Never reached (the test asserts it): were it asked, it would not leave the machine.
    page.route(lambda url: urlsplit(url).hostname == "evil.example", lambda route: route.abort())
    # What an earlier version of the page remembered: cleared once, never used.
    page.goto(stack.url("/"))
    page.evaluate(f"() => localStorage.setItem('uploads.api', '{evil}')")
    page.goto(stack.url(f"/{query}"))
    expect(page.locator("#dataset")).to_have_value(str(dataset))
    page.set_input_files("#files", [str(photo)])
    page.click("#start")
    wait_until_settled(page)
    state = page.get_attribute("#rows tr", "data-state")
    expect(page.locator("#grid img")).to_have_count(1)
    page.wait_for_function("() => document.querySelector('#grid img').naturalWidth > 0")
    local, session = storage(page, "localStorage"), storage(page, "sessionStorage")
    urls = log.urls()
    api_calls = log.to(origin(stack.api))
    s3_calls = log.to(stack.aws)
    authorized = [r.url for r in log.requests if "authorization" in r.all_headers()]

    assert state == "uploaded"
    assert [u for u in urls if urlsplit(u).hostname == "evil.example"] == []
    assert elsewhere(urls, origin(stack.api), stack.aws) == []
    assert {urlsplit(r.url).path for r in api_calls} >= {
        "/config.json",
        f"/datasets/{dataset}/images/prepare-upload",
        f"/datasets/{dataset}/images/confirm-upload",
    }
    assert any(r.method == "PUT" for r in s3_calls)  # the bytes went to the presigned URL
    assert any(r.method == "GET" for r in s3_calls)  # the thumbnail came from it
    assert local == {}  # the old key is gone, nothing new
    assert set(session) <= {"uploads.dataset"}
    assert authorized == []  # open API, no token: no header at all


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


def test_signing_in_then_uploading_to_ones_own_dataset(jwt_stack, tmp_path, browser):
    user, other = f"pat-{uuid.uuid4().hex[:8]}", f"sam-{uuid.uuid4().hex[:8]}"
    dataset = jwt_stack.dataset()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(sample_images.jpeg(640, 480))
    api = origin(jwt_stack.api)
    errors: list[str] = []

    page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))

    # The page's console errors (CSP violations included); the issuer's sign-in page (which has
    # no icon, so Chromium asks for /favicon.ico) is not ours.
    def console_error(message) -> None:
        url = message.location["url"]
        if message.type == "error" and "/_local/oidc/" not in url and not url.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({url})")

    page.on("console", console_error)
    log = RequestLog(page)
    page.goto(jwt_stack.url("/"))
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#token")).to_be_hidden()
    expect(page.locator("#note")).to_contain_text("Sign in")
    sign_in(page, user)
    back_at = page.url
    signed_in = storage(page, "sessionStorage")
    local = storage(page, "localStorage")
    expect(page.locator("#note")).to_be_hidden()
    expect(page.locator("#create")).to_be_visible()

    page.fill("#new-dataset", str(dataset))
    page.click("#create-button")
    expect(page.locator("#datasets")).to_have_value(str(dataset))
    expect(page.locator("#datasets option:checked")).to_have_text(f"{dataset} · owner")
    page.set_input_files("#files", [str(photo)])
    page.click("#start")
    wait_until_settled(page)
    state = page.get_attribute("#rows tr", "data-state")
    status = page.inner_text("#rows td.status")
    expect(page.locator("#grid img")).to_have_count(1)
    page.wait_for_function("() => document.querySelector('#grid img').naturalWidth > 0")
    expect(page.locator("#grid-dataset")).to_have_text(f"{dataset} (owner)")
    page.screenshot(path=tmp_path / "signed_in.png", full_page=True)
    s3_calls = log.to(jwt_stack.aws)
    s3_authorized = [r.url for r in s3_calls if "authorization" in r.all_headers()]
    api_headers = [
        (urlsplit(r.url).path, r.all_headers().get("authorization"))
        for r in log.to(api)
        if r.method != "OPTIONS" and urlsplit(r.url).path.startswith(("/datasets", "/images"))
    ]
    issuer_calls = [urlsplit(r.url).path for r in log.to(api) if "/_local/oidc/" in r.url]
    strangers = elsewhere(log.urls(), api, jwt_stack.aws)

    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#user")).to_be_hidden()
    signed_out = storage(page, "sessionStorage")
    local_after = storage(page, "localStorage")

    # Another user, in a browser context of their own, follows a link to that dataset.
    other_page = browser.new_context().new_page()
    other_page.goto(jwt_stack.url(f"/?dataset={dataset}"))
    sign_in(other_page, other)
    expect(other_page.locator("#message")).to_contain_text(
        f"The API answered 404: Dataset {dataset} not found"
    )
    offered = other_page.eval_on_selector_all("#datasets option[data-role]", "os => os.map(o => o.value)")
    other_url = other_page.url
    expect(other_page.locator("#grid img")).to_have_count(0)

    assert back_at == jwt_stack.url("/")  # the code and state left the address bar
    assert set(signed_in) == {"uploads.token", "uploads.user"}
    token = signed_in["uploads.token"]
    assert claims(token)["sub"] == user
    assert "scope" in claims(token)  # the access token, not the id token
    assert local == {}
    assert local_after == {}
    assert (state, status) == ("uploaded", "uploaded · 640\u00d7480")
    assert any(r.method == "PUT" for r in s3_calls)
    assert s3_authorized == []  # presigned URLs carry their own rights
    assert api_headers
    assert all(header == f"Bearer {token}" for _, header in api_headers), api_headers
    assert {"/datasets", f"/datasets/{dataset}", f"/datasets/{dataset}/images/prepare-upload"} <= {
        path for path, _ in api_headers
    }
    assert {"/_local/oidc/.well-known/openid-configuration", "/_local/oidc/token"} <= set(issuer_calls)
    assert strangers == []
    assert signed_out == {}
    assert offered == []  # the other user has no dataset, and is not shown this one as theirs
    assert other_url == jwt_stack.url(f"/?dataset={dataset}")  # the link's query came back after sign-in
    assert errors == []
    owner = jwt_stack.as_user(user).get(jwt_stack.url(f"/datasets/{dataset}/images"), timeout=10).json()
    assert [(i["filename"], i["status"]) for i in owner] == [("photo.jpg", "uploaded")]


def test_a_forged_sign_in_answer_is_refused(jwt_stack, browser):
    page = browser.new_page()
    log = RequestLog(page)
    page.goto(jwt_stack.url("/?code=stolen&state=guessed&dataset=3"))
    expect(page.locator("#message")).to_contain_text("this tab did not ask for")
    expect(page.locator("#sign-in")).to_be_visible()
    url = page.url
    session = storage(page, "sessionStorage")
    assert url == jwt_stack.url("/?dataset=3")
    assert "uploads.token" not in session
    assert not [u for u in log.urls() if u.endswith("/token")]  # the code was never traded


def test_an_expired_sign_in_signs_out_with_a_message(jwt_stack, browser):
    expired = jwt_stack.dev_token(f"ann-{uuid.uuid4().hex[:8]}", ttl=1)
    deadline = time.monotonic() + 15
    while requests.get(jwt_stack.url("/datasets"), headers=bearer(expired), timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "a token of 1 second was still accepted after 15"
        time.sleep(0.2)
    page = browser.new_page()
    page.goto(jwt_stack.url("/"))
    expect(page.locator("#sign-in")).to_be_visible()
    # As if signed in an hour ago in this tab: the page asks for the datasets, the API says 401.
    page.evaluate(
        """([token]) => { sessionStorage.setItem("uploads.token", token);
                          sessionStorage.setItem("uploads.user", "ann"); }""",
        [expired],
    )
    page.reload()
    expect(page.locator("#message")).to_contain_text("The API refused your sign-in (401 Unauthorized)")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#user")).to_be_hidden()
    session = storage(page, "sessionStorage")
    assert "uploads.token" not in session


def test_a_pasted_token_works_and_an_expired_one_is_refused(jwt_stack, tmp_path, browser):
    user, viewer = f"kim-{uuid.uuid4().hex[:8]}", f"lou-{uuid.uuid4().hex[:8]}"
    dataset = jwt_stack.dataset()
    owner = jwt_stack.as_user(user)
    assert owner.put(jwt_stack.url(f"/datasets/{dataset}"), timeout=10).status_code == 201
    grant = owner.put(
        jwt_stack.url(f"/datasets/{dataset}/members/{viewer}"), json={"role": "viewer"}, timeout=10
    )
    assert grant.status_code == 200, grant.text
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(sample_images.jpeg(200, 100))

    page = browser.new_page()
    # A deployment without sign-in: its users get tokens elsewhere and paste them.
    page.route(jwt_stack.url("/config.json"), lambda route: route.fulfill(json={}))
    log = RequestLog(page)
    page.goto(jwt_stack.url("/"))
    expect(page.locator("#token")).to_be_visible()
    expect(page.locator("#sign-in")).to_be_hidden()
    expect(page.locator("#token")).to_have_attribute("type", "password")

    token = jwt_stack.dev_token(user)
    page.fill("#token", token)
    page.press("#token", "Enter")
    expect(page.locator("#datasets")).to_have_value(str(dataset))
    page.set_input_files("#files", [str(photo)])
    page.click("#start")
    wait_until_settled(page)
    state = page.get_attribute("#rows tr", "data-state")
    stored = storage(page, "sessionStorage").get("uploads.token")
    local = storage(page, "localStorage")
    s3_authorized = [r.url for r in log.to(jwt_stack.aws) if "authorization" in r.all_headers()]

    # A viewer sees the dataset with their role, and the API's 403 when they try to upload.
    page.click("#clear")
    page.fill("#token", jwt_stack.dev_token(viewer))
    page.press("#token", "Enter")
    expect(page.locator("#datasets option:checked")).to_have_text(f"{dataset} · viewer")
    expect(page.locator("#grid img")).to_have_count(1)
    page.set_input_files("#files", [str(photo)])
    page.click("#start")
    expect(page.locator("#message")).to_contain_text(
        f"The API answered 403: This needs the editor role in dataset {dataset}; you are a viewer"
    )

    expired = jwt_stack.dev_token(user, ttl=1)
    deadline = time.monotonic() + 15
    while requests.get(jwt_stack.url("/datasets"), headers=bearer(expired), timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "a token of 1 second was still accepted after 15"
        time.sleep(0.2)
    page.fill("#token", expired)
    page.press("#token", "Enter")
    expect(page.locator("#message")).to_contain_text("The API refused the token (401 Unauthorized)")
    expect(page.locator("#token")).to_have_value("")
    expect(page.locator("#dataset")).to_be_visible()
    after = storage(page, "sessionStorage")

    assert state == "uploaded"
    assert stored == token
    assert local == {}
    assert s3_authorized == []
    assert "uploads.token" not in after
