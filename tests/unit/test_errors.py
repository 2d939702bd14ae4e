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
        ("GET", "/datasets/{dataset_id}/images"),
        ("GET", "/datasets/{dataset_id}/images/with-urls"),
        ("GET", "/images/{image_id}"),
        ("GET", "/images/{image_id}/download-url"),
        ("PATCH", "/images/{image_id}"),
        ("DELETE", "/images/{image_id}"),
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
