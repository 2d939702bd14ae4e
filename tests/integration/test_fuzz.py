"""Schemathesis against the running local stack: generated valid and invalid requests for every
operation of the served OpenAPI document; no 5xx, and every answer as documented."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Stack, _running_stack


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory):
    """A stack of its own: the thousands of records the fuzzing leaves would slow the shared stack's
    listings and its cleanup for every test after it."""
    with _running_stack(tmp_path_factory, "fuzzed-stack") as (api, aws, recording, _):
        yield Stack(api, aws, recording)


def test_every_operation_survives_generated_requests(fuzzed_stack, tmp_path):
    stack = fuzzed_stack
    spec = stack.http.get(stack.url("/openapi.json"))
    assert spec.status_code == 200
    assert len(spec.json()["paths"]) == 12
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    # schemathesis.toml at the repo root: seed, examples per operation, documented exceptions.
    result = subprocess.run(
        [st, "run", stack.url("/openapi.json"), "--checks", "all", "--workers", "2", "--no-color"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (tmp_path / "schemathesis.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-6000:]
