"""GET /limits publishes the upload rules of uploads_core.models, and the clients take theirs from it."""

import io
import json
import re
from pathlib import Path

import pytest
import requests
from PIL import Image

from image_uploads_cli.api import Api as CliApi
from image_uploads_cli.api import ApiError
from image_uploads_cli.scan import Limits
from image_uploads_cli.upload import plan_upload
from local_stack.template import load_template
from tests import sample_images
from uploads_core import formats, models
from uploads_core.settings import Settings, get_settings

ROOT = Path(__file__).parents[2]


def get_limits(api):
    return api.call("get_openapi", path="/limits", query={})


def mpo() -> bytes:
    """What a 3D camera writes: a JPEG whose first image is followed by a second (Pillow's MPO)."""
    first = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[first.rotate(180)])
    return out.getvalue()


def test_limits_are_the_constants_the_models_enforce(api):
    reply = get_limits(api)

    assert reply.status == 200
    published = dict(reply.json)
    signatures, type_names = published.pop("signatures"), published.pop("type_names")
    assert published.pop("sniff_bytes") == formats.SNIFF_BYTES == 64
    assert [
        (s["mime_type"], [(m["offset"], bytes.fromhex(m["hex"])) for m in s["magic"]]) for s in signatures
    ] == [(s.mime_type, list(s.magic)) for s in formats.SIGNATURES]
    assert [(s["ftyp_brands"], s["major_brand_only"]) for s in signatures] == [
        (list(s.ftyp_brands), s.major_brand_only) for s in formats.SIGNATURES
    ]
    assert signatures[0] == {
        "mime_type": "image/jpeg",
        "magic": [{"offset": 0, "hex": "ffd8ff"}],
        "ftyp_brands": [],
        "major_brand_only": False,
    }
    assert type_names == formats.TYPE_NAMES
    assert published == {
        "mime_types": [
            "image/jpeg",
            "image/png",
            "image/webp",
            "image/gif",
            "image/heic",
            "image/heif",
            "image/avif",
        ],
        "min_file_size": 1,
        "max_file_size": 10485760,
        "max_filename_length": 255,
        "max_batch": 1000,
        "max_expires_in": 3600,
        "default_expires_in": 3600,
        "max_page_size": 1000,
        "max_skip": 10000,
        "max_lookup": 1000,
    }
    assert reply.json["mime_types"] == list(models.ALLOWED_MIME_TYPES)
    assert reply.json["max_file_size"] == get_settings().max_upload_bytes
    assert reply.headers["cache-control"] == "public, max-age=300"


def test_the_models_enforce_what_limits_says(api):
    rules = get_limits(api).json
    at_most = {"filename": "a" * rules["max_filename_length"], "file_size": rules["max_file_size"]}
    ok = [{**at_most, "mime_type": mime} for mime in rules["mime_types"]]
    assert api.prepare(1, ok).status == 200
    for wrong in (
        {**at_most, "mime_type": "image/svg+xml"},
        {**at_most, "file_size": rules["max_file_size"] + 1, "mime_type": "image/png"},
        {**at_most, "file_size": rules["min_file_size"] - 1, "mime_type": "image/png"},
        {**at_most, "filename": "a" * (rules["max_filename_length"] + 1), "mime_type": "image/png"},
    ):
        assert api.prepare(1, [wrong]).status == 422, wrong
    too_many = [{"filename": "a.png", "file_size": 1, "mime_type": "image/png"}] * (rules["max_batch"] + 1)
    assert api.prepare(1, too_many).status == 422
    assert api.list(1, limit=rules["max_page_size"] + 1).status == 422
    assert api.list(1, skip=rules["max_skip"] + 1).status == 422
    assert api.lookup(1, ["0" * 64] * rules["max_lookup"]).status == 200
    assert api.lookup(1, ["0" * 64] * (rules["max_lookup"] + 1)).status == 422
    assert api.prepare(1, ok[:1], expires_in=rules["max_expires_in"] + 1).status == 422
    assert api.prepare(1, ok[:1]).json["uploads"][0]["expires_in"] == rules["default_expires_in"]


def test_limits_need_no_token_with_auth_mode_jwt(auth):
    reply = get_limits(auth(None))  # no authorizer ran: a public route
    assert reply.status == 200
    assert reply.json["max_batch"] == models.MAX_BATCH


def test_limits_are_read_from_the_models_at_each_request(api, monkeypatch):
    monkeypatch.setattr(models, "ALLOWED_MIME_TYPES", ("image/png",))
    rules = get_limits(api).json
    assert rules["mime_types"] == ["image/png"]


def test_the_max_upload_bytes_parameter_is_published_and_enforced(api, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "2048")
    get_settings.cache_clear()
    try:
        assert get_limits(api).json["max_file_size"] == 2048
        file = {"filename": "a.png", "mime_type": "image/png"}
        assert api.prepare(1, [{**file, "file_size": 2048}]).status == 200
        refused = api.prepare(1, [{**file, "file_size": 2049}])
        assert refused.status == 422
        assert refused.json["detail"][0]["loc"] == ["body", "files", 0, "file_size"]
    finally:
        monkeypatch.delenv("MAX_UPLOAD_BYTES")
        get_settings.cache_clear()


def test_the_template_default_is_10_mib_and_its_maximum_is_what_the_settings_allow():
    parameter = load_template()["Parameters"]["MaxUploadBytes"]
    assert (parameter["Default"], parameter["MaxValue"]) == (10 * 1024 * 1024, 20 * 1024 * 1024)
    field = Settings.model_fields["max_upload_bytes"]
    assert field.default == parameter["Default"]
    assert any(getattr(m, "le", None) == parameter["MaxValue"] for m in field.metadata)


# --- The CLI: its rules are the API's answer, whatever it says ----------------------------------------


@pytest.fixture
def cli_api(api, monkeypatch) -> CliApi:
    """The CLI's Api class, its HTTP calls answered by the real lambda_handler in this process."""
    calls: list[str] = []

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        calls.append(f"{method} {path}")
        listing = re.fullmatch(r"/datasets/(\d+)/images", path)
        if (method, path) == ("GET", "/limits"):
            reply = get_limits(api)
        elif method == "GET" and listing:
            reply = api.list(int(listing[1]), **kwargs.get("params", {}))
        else:
            raise AssertionError(f"unexpected call {method} {path}")
        response = requests.Response()
        response.status_code = reply.status
        response._content = reply.raw["body"].encode()
        response.headers.update(reply.headers)
        if reply.status >= 400:
            raise ApiError(reply.status, response.text)
        return response

    monkeypatch.setattr(CliApi, "_call", call)
    client = CliApi("http://api.invalid")
    client.calls = calls  # type: ignore[attr-defined]
    return client


def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_the_cli_judges_files_by_the_apis_rules_and_their_bytes(cli_api, monkeypatch, tmp_path):
    # Another deployment's rules: only JPEG and PNG, 4 KiB at most. The CLI has no copy of its own.
    monkeypatch.setattr(models, "ALLOWED_MIME_TYPES", ("image/jpeg", "image/png"))
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "4096")
    get_settings.cache_clear()
    folder = write(
        tmp_path,
        {
            "camera.mpo": mpo(),  # a JPEG, whatever its name says
            "SHOT.JPG": sample_images.jpeg(),
            "old.jfif": sample_images.jpeg(),
            "b.png": sample_images.png(),
            "page.png": sample_images.HTML,  # not an image, whatever its name says
            "anim.gif": sample_images.gif(),  # an image, but not one this API takes
            "big.jpg": sample_images.jpeg_of_size(4097),
            "empty.webp": b"",
        },
    )

    plan = plan_upload(cli_api, 7, folder, None)

    declared = {f.name: f.mime_type for f in plan.to_send}
    assert declared == {
        "camera.mpo": "image/jpeg",
        "SHOT.JPG": "image/jpeg",
        "old.jfif": "image/jpeg",
        "b.png": "image/png",
    }
    assert {r.name: r.reason for r in plan.refused} == {
        "page.png": "content is not a JPEG or PNG image",
        "anim.gif": "GIF images are not accepted (only JPEG or PNG)",
        "big.jpg": "4097 bytes, over 4 KiB",
        "empty.webp": "empty file",
    }
    # Asked once per run, however many files and listings.
    assert cli_api.calls.count("GET /limits") == 1
    assert len(list(cli_api.images(7))) == 0
    assert cli_api.calls.count("GET /limits") == 1


def test_the_cli_uses_the_apis_batch_size(cli_api, monkeypatch):
    monkeypatch.setattr(models, "MAX_BATCH", 3)
    monkeypatch.setattr(models, "MAX_PAGE_SIZE", 2)
    limits = cli_api.limits()
    assert (limits.max_batch, limits.max_page_size) == (3, 2)
    list(cli_api.images(7))
    assert cli_api.calls[-1] == "GET /datasets/7/images"


def test_an_api_without_limits_stops_the_cli_with_a_clear_error(monkeypatch):
    def not_found(self, method, path, **kwargs):
        raise ApiError(404, "Not Found")

    monkeypatch.setattr(CliApi, "_call", not_found)
    with pytest.raises(ApiError) as error:
        CliApi("http://api.invalid").limits()
    assert error.value.status == 404
    assert "does not publish its upload rules (GET /limits)" in str(error.value)


def test_the_cli_sniffs_as_the_server_does(api):
    from upload_processor.inspection import _FORMAT_OF, MIME_TYPES

    cli = Limits.from_json(get_limits(api).json)
    samples = [
        sample_images.jpeg(),
        mpo(),
        sample_images.png(),
        sample_images.gif(),
        sample_images.webp(),
        sample_images.heic(),
        sample_images.avif(),
        b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic",
        b"\0\0\0\x1cftypmif1\0\0\0\0mif1miafavif",  # AVIF by a compatible brand
        b"\0\0\0\x1cftypisom\0\0\0\0isomheic",  # HEIF only as a compatible brand: not an image here
        b"\0\0\0\x14ftypisom\0\0\0\0isom",  # an MP4 video
        b"\0\0\0\x18moovheic\0\0\0\0avif",  # brands, but no ftyp box
        b"GIF87a" + b"\0" * 20,
        b"RIFF\0\0\0\0WEBPVP8 ",
        sample_images.HTML,
        b"\x89PNG\r\n",  # a cut signature
        b"RIFF\0\0\0\0WAVE",
        b"",
    ]
    expected = ["image/jpeg"] * 2 + ["image/png", "image/gif", "image/webp", "image/heic", "image/avif"]
    expected += ["image/heic", "image/avif", None, None, None, "image/gif", "image/webp"] + [None] * 4
    assert [formats.sniff(data[:64]) for data in samples] == expected
    assert [cli.sniff(data[: cli.sniff_bytes]) for data in samples] == expected
    # The trigger opens each with its own decoder (the page's sniff: test_upload_page.py).
    assert {MIME_TYPES[_FORMAT_OF[mime]] for mime in expected if mime} == set(expected) - {None}


def test_the_cli_follows_the_signatures_the_api_publishes(api):
    rules = get_limits(api).json
    rules["signatures"] = [{"mime_type": "image/png", "magic": [{"offset": 1, "hex": "504e47"}],
                            "ftyp_brands": [], "major_brand_only": False}]  # fmt: skip
    cli = Limits.from_json(rules)
    assert cli.sniff(sample_images.png()) == "image/png"
    assert cli.sniff(sample_images.jpeg()) is None


def test_limits_parse_into_the_clis_rules(api):
    limits = Limits.from_json(get_limits(api).json)
    assert limits.mime_types == models.ALLOWED_MIME_TYPES
    assert limits.type_names() == "JPEG, PNG, WebP, GIF, HEIC, HEIF or AVIF"


def test_no_client_keeps_its_own_copy_of_the_rules():
    """The behaviour is tested above and in the browser; this catches a copy coming back."""
    copies = re.compile(
        r"10485760|10_485_760|10\s*\*\s*1024\s*\*\s*1024|10 MiB|\b1000\b|"
        r"image/jpeg\W+image/png|image/jpeg\W+image/webp|"
        r"0xd8|ffd8|GIF8|WEBP|\"avif\"|\"heic\""  # magic numbers and brands
    )
    clients = [*(ROOT / "cli" / "image_uploads_cli").glob("*.py"), *(ROOT / "web").glob("*.*")]
    assert clients
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in clients
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if copies.search(line)
    ]
    assert found == []


def test_an_api_whose_rules_lack_the_signatures_stops_the_cli_with_a_clear_error(api, monkeypatch):
    older = {k: v for k, v in get_limits(api).json.items() if k not in ("signatures", "sniff_bytes")}

    def answer(self, method, path, **kwargs):
        response = requests.Response()
        response.status_code, response._content = 200, json.dumps(older).encode()
        return response

    monkeypatch.setattr(CliApi, "_call", answer)
    with pytest.raises(ApiError) as error:
        CliApi("http://api.invalid").limits()
    assert "rules this CLI does not understand (an older API? update it)" in str(error.value)
