"""What a cold start imports: what only some requests need stays out of the handler's import."""

import json
import os
import subprocess
import sys

from local_stack.template import REPO_ROOT, function_environment, load_template


def test_the_api_handler_imports_neither_the_openapi_models_nor_the_xray_sdk():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env |= function_environment(load_template(), "ApiFunction") | {"AWS_REGION": "us-east-1"}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO_ROOT / p) for p in ("layers/common", "functions/api"))
    code = "import json, sys, images_api.handler; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "images_api.handler" in modules
    assert "aws_lambda_powertools.event_handler.openapi.models" not in modules
    assert not {m for m in modules if m.startswith("aws_xray_sdk")}
