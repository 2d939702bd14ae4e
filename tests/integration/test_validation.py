"""Every bad input gets a JSON 4xx over HTTP, and a rejected request writes nothing."""

import pytest

GOOD = {"filename": "car.jpg", "file_size": 1024, "mime_type": "image/jpeg"}


def post_prepare(stack, dataset, body, **kwargs):
    return stack.http.post(stack.url(f"/datasets/{dataset}/images/prepare-upload"), json=body, **kwargs)


@pytest.mark.parametrize(
    ("files", "loc"),
    [
        ([{**GOOD, "mime_type": "image/svg+xml"}], ["body", "files", 0, "mime_type"]),
        ([{**GOOD, "file_size": 10 * 1024 * 1024 + 1}], ["body", "files", 0, "file_size"]),
        ([{**GOOD, "file_size": 0}], ["body", "files", 0, "file_size"]),
        ([{**GOOD, "filename": ""}], ["body", "files", 0, "filename"]),
        ([{**GOOD, "filename": "a" * 256}], ["body", "files", 0, "filename"]),
        ([], ["body", "files"]),
        ([GOOD] * 1001, ["body", "files"]),
        ([GOOD, {**GOOD, "mime_type": "text/html"}], ["body", "files", 1, "mime_type"]),
    ],
)
def test_invalid_prepare_gets_422_and_writes_nothing(stack, files, loc):
    dataset = stack.dataset()
    reply = post_prepare(stack, dataset, {"files": files})
    assert reply.status_code == 422
    assert reply.headers["Content-Type"].startswith("application/json")
    assert loc in [e["loc"] for e in reply.json()["detail"]]
    assert stack.http.get(stack.url(f"/datasets/{dataset}/images")).json() == []


def test_malformed_json_gets_400(stack):
    reply = stack.http.post(
        stack.url("/datasets/1/images/prepare-upload"),
        data=b'{"files": [',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.json() == {"detail": "Malformed JSON body"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/images/0"),
        ("GET", "/images/abc"),
        ("GET", "/images/-1/download-url"),
        ("DELETE", "/images/1.5"),
        ("GET", "/datasets/zero/images"),
        ("GET", "/datasets/0/images/with-urls"),
    ],
)
def test_non_positive_or_non_integer_ids_get_422(stack, method, path):
    reply = stack.http.request(method, stack.url(path))
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"][0] == "path"


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_image_gets_404(stack, method):
    reply = stack.http.request(method, stack.url("/images/987654321"))
    assert reply.status_code == 404
    assert reply.json() == {"detail": "Image 987654321 not found"}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"skip": -1},
        {"status": "gone"},
        {"expires_in": 0},
        {"expires_in": 604801},
    ],
)
def test_bad_list_parameters_get_422(stack, params):
    reply = stack.http.get(stack.url("/datasets/1/images/with-urls"), params=params)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"][0] == "query"


def test_patch_rules_over_http(stack):
    dataset = stack.dataset()
    ticket = post_prepare(stack, dataset, {"files": [GOOD]}).json()["uploads"][0]
    image = stack.url(f"/images/{ticket['image_id']}")

    assert stack.http.patch(image, json={"status": "uploaded"}).status_code == 409
    assert stack.http.patch(image, json={"width": -1}).status_code == 422
    assert stack.http.patch(image, json={"colour": "red"}).status_code == 422
    assert stack.http.patch(image, data=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert stack.http.get(image).json()["status"] == "uploading"
