"""Starts the local stack (`python -m local_stack`, what `make run` runs) on free ports."""

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import requests

ROOT = Path(__file__).parents[2]
READY = "local_stack ready:"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    def __init__(self, api_url: str, aws_url: str, recording: Path) -> None:
        self.api = api_url
        self.aws = aws_url
        self._recording = recording
        self.http = requests.Session()
        self._datasets = itertools.count(1000)

    def dataset(self) -> int:
        """A dataset id no other test uses: tests share one stack."""
        return next(self._datasets)

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.aws,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def bucket(self) -> str:
        """The images bucket, named as the functions see it."""
        from local_stack.template import function_environment, load_template

        return function_environment(load_template(), "ApiFunction")["IMAGES_BUCKET"]

    def table(self) -> str:
        from local_stack.template import function_environment, load_template

        return function_environment(load_template(), "ApiFunction")["IMAGES_TABLE"]

    def check_invariants(self, datasets, kept_uploaded=()) -> list[dict]:
        """tests/invariants.py over these datasets' records and objects on the running stack."""
        from local_stack.template import function_environment, load_template
        from tests import invariants

        hashes = function_environment(load_template(), "ApiFunction")["HASHES_TABLE"]
        s3, dynamodb = self.client("s3"), self.client("dynamodb")
        return invariants.check(
            s3, self.bucket(), dynamodb, self.table(), kept_uploaded, datasets, hashes_table=hashes
        )

    def url(self, path: str) -> str:
        return self.api + path

    def record_aws_calls(self):
        """Context manager: the AWS calls moto server saw, as (service, operation) pairs."""
        return _Recording(self)


class _Recording:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.calls: list[tuple[str, str]] = []

    def __enter__(self):
        requests.post(f"{self.stack.aws}/moto-api/recorder/reset-recording", timeout=5)
        requests.post(f"{self.stack.aws}/moto-api/recorder/start-recording", timeout=5)
        return self

    def __exit__(self, *exc) -> None:
        requests.post(f"{self.stack.aws}/moto-api/recorder/stop-recording", timeout=5)
        lines = requests.get(f"{self.stack.aws}/moto-api/recorder/download-recording", timeout=5).text
        for line in filter(None, lines.splitlines()):
            entry = json.loads(line)
            headers = {k.lower(): v for k, v in entry["headers"].items()}
            target = headers.get("x-amz-target", "")
            if target.startswith("DynamoDB_"):
                self.calls.append(("dynamodb", target.split(".", 1)[1]))
            else:
                self.calls.append(("s3", entry["method"]))


class JwtStack(Stack):
    """A stack run as `make run AUTH=jwt`: its own OIDC issuer, API Gateway's JWT authorizer."""

    def __init__(self, api_url: str, aws_url: str, recording: Path, banner: str) -> None:
        super().__init__(api_url, aws_url, recording)
        self.banner = banner
        self.api_port = int(api_url.rsplit(":", 1)[1])

    @property
    def issuer(self) -> str:
        return f"{self.api}/_local/oidc"

    def dev_token(self, sub: str = "alice", **body) -> str:
        response = requests.post(f"{self.issuer}/dev/token", json={"sub": sub, **body}, timeout=10)
        response.raise_for_status()
        return response.json()["token"]

    def as_user(self, sub: str) -> requests.Session:
        """An HTTP session that sends `sub`'s token with every request."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.dev_token(sub)}"
        return session


@contextmanager
def _running_stack(tmp_path_factory, name: str, *options: str) -> Iterator[tuple[str, str, Path, str]]:
    """`python -m local_stack` on free ports until the block ends; (api, aws, recording, banner).

    A port found free may be taken before the stack binds it (pytest-xdist's workers start stacks at
    the same time): the stack then says so and stops, and is started again on other ports."""
    recording = tmp_path_factory.mktemp("moto") / "recording"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local"), "MOTO_RECORDER_FILEPATH": str(recording)}
    for variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "IMAGES_TABLE", "IMAGES_BUCKET", "AUTH"):
        env.pop(variable, None)
    log = (tmp_path_factory.mktemp(name) / "stack.log").open("w+")
    for attempt in itertools.count(1):
        api_port, aws_port = _free_port(), _free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "local_stack",
                *options,
                "--api-port",
                str(api_port),
                "--aws-port",
                str(aws_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        banner, deadline = [], time.monotonic() + 60
        for line in process.stdout:
            banner.append(line)
            if line.startswith(READY) or time.monotonic() > deadline:
                break
        if banner and banner[-1].startswith(READY):
            break
        process.kill()
        process.wait()
        log.seek(0)
        output = "".join(banner) + log.read()
        if attempt == 3 or "in use" not in output:
            pytest.fail(f"local stack {' '.join(options)} did not start:\n{output}")
    # Keep reading: a full pipe would block the functions' log writes, and so the stack.
    threading.Thread(target=lambda: log.writelines(process.stdout), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{aws_port}", recording, "".join(banner)
    finally:
        process.terminate()
        try:
            assert process.wait(timeout=15) == 0, f"local stack {' '.join(options)} did not stop cleanly"
        finally:
            process.kill()
            log.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """`make run`: the open API of the note, shared by the integration tests."""
    with _running_stack(tmp_path_factory, "stack") as (api, aws, recording, _):
        yield Stack(api, aws, recording)


@pytest.fixture(scope="session")
def jwt_stack(tmp_path_factory) -> Iterator[JwtStack]:
    """`make run AUTH=jwt`, shared by the tests of tokens and roles over HTTP."""
    with _running_stack(tmp_path_factory, "jwt-stack", "--auth", "jwt") as (api, aws, recording, banner):
        yield JwtStack(api, aws, recording, banner)
