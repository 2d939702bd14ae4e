"""What a cold start imports: what only some requests need stays out of the handler's import."""

import json
import os
import subprocess
import sys

import pytest

from local_stack.template import REPO_ROOT, function_environment, load_template


def imported_by(function: str, folder: str, module: str) -> set[str]:
    """Every module a fresh interpreter holds after importing `module`, with the function's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env |= function_environment(load_template(), function) | {"AWS_REGION": "us-east-1"}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO_ROOT / p) for p in ("layers/common", folder))
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert module in modules
    return modules


def test_the_api_handler_imports_neither_the_openapi_models_nor_the_xray_sdk():
    modules = imported_by("ApiFunction", "functions/api", "images_api.handler")
    assert "aws_lambda_powertools.event_handler.openapi.models" not in modules
    assert not {m for m in modules if m.startswith("aws_xray_sdk")}


@pytest.mark.parametrize(
    ("function", "folder", "module"),
    [
        ("ProcessUploadFunction", "functions/process_upload", "upload_processor.handler"),
        ("CleanupFunction", "functions/cleanup", "upload_cleanup.handler"),
    ],
)
def test_the_trigger_and_cleanup_import_no_event_classes_nor_settings_library(function, folder, module):
    """They read their events as dicts: Powertools' data classes and parser (every event source's) and
    pydantic-settings cost a cold start more than the fields they would read."""
    unwanted = (
        "aws_lambda_powertools.utilities.data_classes",
        "aws_lambda_powertools.utilities.parser",
        "pydantic_settings",
        "aws_xray_sdk",
    )
    assert not {m for m in imported_by(function, folder, module) if m.startswith(unwanted)}
