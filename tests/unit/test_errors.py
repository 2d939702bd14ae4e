"""Whatever goes wrong, the client gets JSON and no internals."""

import json

from tests.unit.conftest import EVENTS, jpeg_file


def test_unknown_route_gets_json_404(api):
    # What API Gateway sends for a path no route matches, given a `$default` route.
    from images_api.handler import lambda_handler
    from tests.unit.conftest import FakeContext, Reply, load_event

    event = load_event("get_image")
    event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/nope"
    del event["pathParameters"]
    reply = Reply(lambda_handler(event, FakeContext()))
    assert reply.status == 404
    assert reply.json == {"detail": "Not Found"}


def test_unexpected_failure_is_a_json_500_without_traceback(api, monkeypatch):
    from uploads_core import images_table

    def boom(image_id):
        raise RuntimeError("secret internals /var/task/x.py")

    monkeypatch.setattr(images_table, "get", boom)
    reply = api.image("get_image", 1)
    assert reply.status == 500
    assert reply.json == {"detail": "Internal server error"}
    assert "secret" not in json.dumps(reply.raw)


def test_validation_errors_do_not_echo_the_input(api):
    reply = api.prepare(1, [jpeg_file(name="x" * 300)])
    assert reply.status == 422
    assert "x" * 300 not in json.dumps(reply.json)


def test_nothing_in_the_api_ever_scans(api, uploaded, aws_calls):
    tickets = uploaded(n=3)
    ids = [t["image_id"] for t in tickets]
    api.confirm(1, ids)
    api.list(1, limit=1)
    api.list(1, with_urls=True, status="uploaded")
    api.image("get_image", ids[0])
    api.image("get_download_url", ids[0])
    api.image("patch_image", ids[0], body={"width": 3})
    api.image("delete_image", ids[0])

    operations = {op for (service, op) in aws_calls if service == "dynamodb"}
    assert "Query" in operations
    assert "Scan" not in operations


def test_handler_imports_without_any_setting_and_reads_them_on_first_use(tmp_path):
    # Settings are read lazily: a cold start does no work, and tests can set the environment later.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGES_"))}
    root = EVENTS.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root / "layers/common"), str(root / "functions/api")])
    code = (
        "import sys, images_api.handler, uploads_core.images_table, uploads_core.images_bucket; "
        # What a cold start does not need stays out: the X-Ray SDK (tracing off here), boto3's s3transfer.
        "print('ok', 'aws_xray_sdk' in sys.modules, 's3transfer' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok False False"


def test_openapi_document_lists_every_route_with_its_schemas(api):
    reply = api.call("get_openapi")
    assert reply.status == 200
    spec = reply.json
    assert spec["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert operations == {
        ("POST", "/datasets/{dataset_id}/images/prepare-upload"),
        ("POST", "/datasets/{dataset_id}/images/confirm-upload"),
        ("POST", "/datasets/{dataset_id}/images/lookup"),
        ("GET", "/datasets/{dataset_id}/images"),
        ("GET", "/datasets/{dataset_id}/images/with-urls"),
        ("GET", "/images/{image_id}"),
        ("GET", "/images/{image_id}/download-url"),
        ("PATCH", "/images/{image_id}"),
        ("DELETE", "/images/{image_id}"),
        ("GET", "/datasets"),
        ("PUT", "/datasets/{dataset_id}"),
        ("GET", "/datasets/{dataset_id}/members"),
        ("PUT", "/datasets/{dataset_id}/members/{sub}"),
        ("DELETE", "/datasets/{dataset_id}/members/{sub}"),
        ("GET", "/limits"),
    }
    assert "PrepareUploadRequest" in spec["components"]["schemas"]


def test_swagger_ui_is_served_at_docs(api):
    reply = api.call("get_docs")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "swagger" in reply.raw["body"].lower()


def test_a_path_id_the_resolver_cannot_even_match_is_a_422_not_a_404(api):
    # API Gateway routed `/images/£` to /images/{image_id}; the id is what is wrong.
    reply = api.image("get_image", "%C2%A3")
    assert reply.status == 422
    assert reply.json["detail"][0]["loc"] == ["path", "image_id"]


def test_json_nested_too_deeply_is_a_400_not_a_500(api):
    reply = api.call("prepare_upload", raw_body="[" * 100_000 + "]" * 100_000)
    assert reply.status == 400
    assert reply.json == {"detail": "Malformed JSON body: nested too deeply"}


def test_a_5000_digit_integer_is_a_400_not_a_500(api):
    body = '{"files": [{"filename": "a.jpg", "file_size": ' + "9" * 5000 + ', "mime_type": "image/jpeg"}]}'
    reply = api.call("prepare_upload", raw_body=body)
    assert reply.status == 400
    assert reply.json["detail"].startswith("Malformed JSON body: Exceeds the limit (4300 digits)")


def test_skip_is_capped_and_the_422_points_to_the_cursor(api, aws):
    assert api.list(1, skip=10_000).status == 200
    reply = api.list(1, skip=10_001)
    assert reply.status == 422
    (error,) = reply.json["detail"]
    assert error["loc"] == ["query", "skip"]
    assert "cursor" in error["msg"]


def test_an_aws_endpoint_that_never_answers_fails_the_request_instead_of_hanging(api, monkeypatch):
    """A black hole: accepts connections and never answers. The SDK's defaults waited 60 s per try."""
    import socket
    import threading

    from uploads_core import images_bucket, images_table
    from uploads_core.settings import get_settings

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{hole.getsockname()[1]}")
    monkeypatch.setenv("AWS_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    images_bucket._s3.cache_clear()
    monkeypatch.setattr(images_table.ImageRecord, "_connection", None)
    monkeypatch.setattr(images_table.IdCounter, "_connection", None)
    outcomes = {}

    def call(name, fn):
        try:
            outcomes[name] = fn()
        except Exception as exc:
            outcomes[name] = exc

    workers = [
        threading.Thread(target=call, args=("dynamodb", lambda: api.image("get_image", 1))),
        threading.Thread(target=call, args=("s3", lambda: images_bucket.head("datasets/1/x.jpg"))),
    ]
    for worker in workers:
        worker.daemon = True
        worker.start()
    for worker in workers:
        worker.join(20)  # with the SDKs' defaults: 60 s per attempt
    hole.close()
    assert not any(worker.is_alive() for worker in workers), "a request hangs"
    assert outcomes["dynamodb"].status == 500
    assert "timeout" in type(outcomes["s3"]).__name__.lower()
