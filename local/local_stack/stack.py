"""The whole local stack: moto for S3/DynamoDB, the template's resources, functions and HTTP API."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from local_stack.api_gateway import ApiServer, HttpApi
from local_stack.lambda_runtime import LambdaRuntime
from local_stack.template import (
    DEFAULT_TEMPLATE,
    PSEUDO_DEFAULTS,
    REPO_ROOT,
    cors_configuration,
    create_resources,
    http_routes,
    load_template,
)


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once host:port accepts TCP connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((_client_host(host), port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class LocalStack:
    """Start with ``start()``, stop with ``stop()``; ``invoke()`` runs a function against it."""

    def __init__(
        self,
        template: Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        api_port: int = 3000,
        aws_port: int = 4566,
        stack_name: str = PSEUDO_DEFAULTS["stack_name"],
        region: str = PSEUDO_DEFAULTS["region"],
        account_id: str = PSEUDO_DEFAULTS["account_id"],
        base_dir: Path = REPO_ROOT,
    ) -> None:
        self.template = template if template is not None else load_template(DEFAULT_TEMPLATE)
        self.host = host
        self.names = {"stack_name": stack_name, "region": region, "account_id": account_id}
        self.base_dir = base_dir
        self._aws_port = aws_port
        self._api_port = api_port
        self.resources: dict[str, str] = {}
        self._moto: ThreadedMotoServer | None = None
        self.runtime: LambdaRuntime | None = None
        self.api_server: ApiServer | None = None

    @property
    def aws_endpoint(self) -> str:
        return f"http://{_client_host(self.host)}:{self._aws_port}"

    @property
    def api_url(self) -> str:
        return (
            self.api_server.url if self.api_server else f"http://{_client_host(self.host)}:{self._api_port}"
        )

    def client(self, service: str) -> Any:
        """A boto3 client for the local AWS endpoint (fake credentials, never a real account)."""
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
            region_name=self.names["region"],
        )
        return session.client(service, endpoint_url=self.aws_endpoint)  # type: ignore[call-overload]

    def start(self) -> LocalStack:
        self._moto = ThreadedMotoServer(ip_address=self.host, port=self._aws_port, verbose=False)
        self._moto.start()
        self._aws_port = self._moto.get_host_and_port()[1]  # the real one when port 0 was asked
        wait_for_port(self.host, self._aws_port)
        self.resources = create_resources(
            self.template, self.client("dynamodb"), self.client("s3"), **self.names
        )
        self.runtime = LambdaRuntime(
            self.template, aws_endpoint=self.aws_endpoint, base_dir=self.base_dir, **self.names
        )
        api = HttpApi.from_routes(
            http_routes(self.template),
            self.runtime.invoke,
            cors=cors_configuration(self.template, **self.names),
            account_id=self.names["account_id"],
        )
        self.api_server = ApiServer(api, self.host, self._api_port).start()
        self._api_port = self.api_server.port
        wait_for_port(self.host, self._api_port)
        return self

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Run a function of the template in this process, pointed at the local AWS endpoint."""
        if self.runtime is None:
            raise RuntimeError("start() the stack first")
        return self.runtime.invoke(logical_id, event)

    def stop(self) -> None:
        if self.api_server:
            self.api_server.stop()
            self.api_server = None
        if self._moto:
            self._moto.stop()
            # ThreadedMotoServer.stop() leaves the listening socket open.
            httpd = getattr(self._moto, "_server", None)
            if httpd is not None:
                httpd.server_close()
            self._moto = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
