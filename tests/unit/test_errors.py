"""Whatever goes wrong, the client gets JSON and no internals."""

import json

from tests.unit.conftest import EVENTS, jpeg_file


def test_unknown_route_gets_json_404(api):
    reply = api.call("get_image", path="/nope")
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
    code = "import images_api.handler, uploads_core.images_table, uploads_core.images_bucket; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
